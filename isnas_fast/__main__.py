"""``python -m isnas_fast``: the command-line tool."""
from .cli import console

console()
