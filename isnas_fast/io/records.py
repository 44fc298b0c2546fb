"""Append-only JSON-lines records that survive a kill at any moment.

Long runs (studies, suites) write one record per finished piece of work.  A
record is one line written with a single ``write`` on a file opened for
appending and flushed to disk, so a killed writer leaves at most one torn
last line, which :meth:`RecordLog.read` drops (and truncates away) before
anything new is appended.  A settings file beside the records refuses a
rerun with other settings in the same folder.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable

from ..errors import InputError
from .files import atomic_write_text

__all__ = ["RecordLog", "guard_settings"]


class RecordLog:
    """Records (JSON objects), one per line, in ``path``."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def read(self) -> list[dict]:
        """Every complete record, in order; a torn last line is removed from the file."""
        if not self.path.exists():
            return []
        data = self.path.read_bytes()
        records: list[dict] = []
        good = 0
        for line in data.splitlines(keepends=True):
            if not line.endswith(b"\n"):
                break  # torn by a kill: never completed
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                break
            if not isinstance(rec, dict):
                break
            records.append(rec)
            good += len(line)
        if good != len(data):
            with open(self.path, "r+b") as fh:
                fh.truncate(good)
                fh.flush()
                os.fsync(fh.fileno())
        return records

    def append(self, record: dict) -> None:
        """Append one record as one complete line, flushed to disk."""
        line = (json.dumps(record, default=_jsonable, separators=(",", ":")) + "\n").encode("utf-8")
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)

    def extend(self, records: Iterable[dict]) -> None:
        for r in records:
            self.append(r)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def guard_settings(folder: str | os.PathLike, settings: dict, *, name: str, what: str) -> None:
    """Store ``settings`` in ``folder/name`` on first use; refuse different settings later.

    ``what`` names the kind of run in the error ("study", "suite").  Settings
    are compared as their JSON text, so they must be JSON-able values.
    """
    path = Path(folder) / name
    text = json.dumps(settings, indent=2, sort_keys=True, default=str) + "\n"
    if path.exists():
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            raise InputError(f"{path} is damaged; use an empty output folder") from None
        if json.dumps(stored, indent=2, sort_keys=True, default=str) + "\n" != text:
            changed = sorted(k for k in set(stored) | set(settings) if stored.get(k) != json.loads(text).get(k))
            raise InputError(f"{Path(folder)} holds a {what} with other settings (changed: {', '.join(changed)}); "
                             f"use another output folder or the same settings to resume")
        return
    atomic_write_text(path, text)
