"""The code's layout rules: docs/design.md §2's rooms (each imports only from rooms below it)
and short functions (none over 80 lines), checked on the source."""
from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("isnas_fast", "kernels", "export")  # kernels/ and export/ install as isnas_fast.kernels / .export
MAX_LINES = 80


def _rooms() -> dict[str, int]:
    """Each room's modules and packages (``dip``, ``api``, ``kernels``, ...) -> its row in §2's table."""
    text = (ROOT / "docs" / "design.md").read_text(encoding="utf-8")
    section = text[text.index("## §2 Layout"):text.index("## §3")]
    rooms: dict[str, int] = {}
    for row, line in enumerate(l for l in section.splitlines() if l.startswith("| `")):
        first = line.split("|")[1]
        for path in re.findall(r"`([^`]+)`", first):
            name = path.removeprefix("isnas_fast/").rstrip("/").removesuffix(".py")
            if name not in ("bench", "tests"):
                rooms[name] = row
    return rooms


def _files() -> list[Path]:
    return [p for d in SOURCES for p in sorted((ROOT / d).rglob("*.py"))]


def _module(path: Path) -> list[str]:
    """The module's name inside the package, e.g. ["dip", "loop"], ["kernels", "fused_spectral"], ["api"]."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return parts[1:] if parts[0] == "isnas_fast" else parts


def _imports(path: Path, module: list[str]) -> list[tuple[int, list[str]]]:
    """(line, imported module inside the package) of every import of the package, also inside functions."""
    package = module[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[:len(package) - node.level + 1]
            if node.module:
                found.append((node.lineno, base + node.module.split(".")))
            else:
                found += [(node.lineno, base + [a.name]) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "isnas_fast":
            inner = node.module.split(".")[1:]
            found += [(node.lineno, inner)] if inner else [(node.lineno, [a.name]) for a in node.names]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name.split(".")[1:]) for a in node.names
                      if a.name.split(".")[0] == "isnas_fast" and "." in a.name]
    return found


def test_every_module_has_a_room_and_imports_only_from_rooms_below():
    rooms = _rooms()
    assert {"errors", "io", "kernels", "dip", "search", "api", "cli"} <= set(rooms)
    unplaced, upward = [], []
    for path in _files():
        module = _module(path)
        if module[0] in ("__init__", "__main__"):
            continue  # the package's face: it gathers the public names from every room
        if module[0] not in rooms:
            unplaced.append(str(path.relative_to(ROOT)))
            continue
        for line, target in _imports(path, module):
            if target and target[0] in rooms and rooms[target[0]] > rooms[module[0]]:
                upward.append(f"{path.relative_to(ROOT)}:{line} imports {'.'.join(target)}")
    assert not unplaced, f"modules in no room of docs/design.md §2: {unplaced}"
    assert not upward, "imports from a room above: " + "; ".join(upward)


def test_no_function_is_longer_than_80_lines():
    long = []
    for path in _files():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, "split these: " + "; ".join(long)
