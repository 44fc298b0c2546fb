"""``python -m isnas_fast``: the command-line tool."""
from .cli import main

raise SystemExit(main())
