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
import math
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..errors import InputError
from .files import FILE_MODE, atomic_write_text

__all__ = ["RecordLog", "guard_settings"]


class RecordLog:
    """Records (JSON objects), one per line, in ``path``."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def read(self) -> list[dict]:
        """Every complete record, in order.

        A torn last line (no newline: a write cut short by a kill) is removed
        from the file; a complete line that is not a JSON object (edited by
        hand?) raises InputError and nothing is changed.
        """
        if not self.path.exists():
            return []
        data = self.path.read_bytes()
        lines = data.split(b"\n")
        records: list[dict] = []
        for number, line in enumerate(lines[:-1], start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                rec = None
            if not isinstance(rec, dict):
                raise InputError(f"{self.path} line {number} is not a JSON record (edited by hand?); fix or "
                                 "delete that line, then rerun")
            records.append(rec)
        if lines[-1]:
            with open(self.path, "r+b") as fh:
                fh.truncate(len(data) - len(lines[-1]))
                fh.flush()
                os.fsync(fh.fileno())
        return records

    def append(self, record: Mapping[str, Any]) -> None:
        """Append one record as one complete line (strict JSON: NaN and infinities
        become null), in one write, flushed to disk before returning."""
        text = json.dumps(_finite(record), default=_jsonable, separators=(",", ":"), allow_nan=False)
        view = memoryview((text + "\n").encode("utf-8"))
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
        try:
            while view:  # a regular file takes it in one write; loop in case it does not
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)

    def extend(self, records: Iterable[dict]) -> None:
        for r in records:
            self.append(r)


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinite floats as None (strict JSON has neither)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


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
