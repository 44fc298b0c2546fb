"""Append-only JSON-lines records that survive a kill at any moment, and the
writer lock of a folder of records.

Long runs (studies, suites) write one record per finished piece of work.  A
record is one line written with a single ``write`` on a file opened for
appending and flushed to disk, so a killed writer leaves at most one torn
last line, which :meth:`RecordLog.read` drops (and truncates away) before
anything new is appended.  A settings file beside the records refuses a
rerun with other settings in the same folder, and :func:`writer_lock` lets
one run at a time write into a folder.  Readers keep the first record of
each key (:func:`first_of_each`), so a record written twice is counted once.
"""
from __future__ import annotations

import contextlib
import json
import os
import warnings
from pathlib import Path
from typing import Any, Callable, Hashable, Iterable, Iterator, Mapping

from ..errors import InputError
from .files import FILE_MODE, atomic_write_text, fsync_folder, json_text, os_error

try:  # POSIX; elsewhere two runs into one folder are not prevented
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

__all__ = ["RecordLog", "guard_settings", "writer_lock", "first_of_each"]


@contextlib.contextmanager
def writer_lock(folder: str | os.PathLike, *, what: str, name: str) -> Iterator[Path]:
    """Hold the writer lock of ``folder`` (an exclusive ``flock`` on ``folder/name``) while the block runs.

    Another holder -- a second run, in this process or any other -- makes this
    raise :class:`InputError` at once ("another <what> run is writing to
    <folder>"), it does not wait.  The lock goes with the file descriptor, so
    a killed run never leaves the folder locked.  Yields the folder.
    """
    folder = Path(folder)
    if fcntl is None:  # pragma: no cover
        yield folder
        return
    path = folder / name
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
    except OSError as exc:
        raise os_error("write", path, exc) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError(f"another {what} run is writing to {folder}; wait for it or use another "
                             "--out folder") from None
        yield folder
    finally:
        os.close(fd)  # releases the lock (also when the process is killed)


def first_of_each(records: Iterable[dict], key: Callable[[dict], Hashable], *, source: Any,
                  warn: bool = True) -> list[dict]:
    """The first record of each ``key(record)``, in order; later ones are dropped, with one
    warning when ``warn``.

    ``source`` (the records' file) names where the duplicates are in the
    warning.  Duplicates appear when two runs wrote the same work, so every
    count made from the result counts each key once.
    """
    kept: dict[Hashable, dict] = {}
    dropped = 0
    for rec in records:
        k = key(rec)
        if k in kept:
            dropped += 1
        else:
            kept[k] = rec
    if dropped and warn:
        warnings.warn(f"{source} holds {dropped} duplicate record(s) (written twice, perhaps by two runs at "
                      "once); the first of each is used", UserWarning, stacklevel=3)
    return list(kept.values())


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
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            raise os_error("read", self.path, exc) from None
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
            try:
                with open(self.path, "r+b") as fh:
                    fh.truncate(len(data) - len(lines[-1]))
                    fh.flush()
                    os.fsync(fh.fileno())
            except OSError as exc:
                raise os_error("write", self.path, exc) from None
        return records

    def append(self, record: Mapping[str, Any]) -> None:
        """Append one record as one complete line (strict JSON: NaN and infinities
        become null), in one write, flushed to disk before returning.

        A refused write (disk full, read-only folder) raises :class:`InputError`
        naming the file and the reason; a part of the line that did get
        written is a torn last line, dropped by the next :meth:`read`.
        """
        text = json_text(record, indent=None, compact=True)
        view = memoryview((text + "\n").encode("utf-8"))
        created = not self.path.exists()
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
            try:
                while view:  # a regular file takes it in one write; loop in case it does not
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise os_error("write", self.path, exc) from None
        if created:
            fsync_folder(self.path.parent)  # the new file's name, too, survives a power cut

    def extend(self, records: Iterable[dict]) -> None:
        for r in records:
            self.append(r)


def guard_settings(folder: str | os.PathLike, settings: dict, *, name: str, what: str) -> None:
    """Store ``settings`` in ``folder/name`` on first use; refuse different settings later.

    ``what`` names the kind of run in the error ("study", "suite").  Settings
    are compared as their JSON text, so they must be JSON-able values.
    """
    path = Path(folder) / name
    text = json_text(settings, sort_keys=True) + "\n"
    if path.exists():
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            raise InputError(f"{path} is damaged; use an empty output folder") from None
        if json_text(stored, sort_keys=True) + "\n" != text:
            changed = sorted(k for k in set(stored) | set(settings) if stored.get(k) != json.loads(text).get(k))
            raise InputError(f"{Path(folder)} holds a {what} with other settings (changed: {', '.join(changed)}); "
                             f"use another output folder or the same settings to resume")
        return
    atomic_write_text(path, text)
