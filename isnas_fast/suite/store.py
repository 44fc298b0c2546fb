"""The results of a suite on disk: settings in ``suite.json``, one JSON row per
finished job in ``results.jsonl``, written so that nothing is lost or
duplicated when a run is killed at any moment.

A row is appended as one complete line in one write, then flushed to disk
(``fsync``; :class:`~isnas_fast.io.records.RecordLog`); a run killed in the
middle of that write leaves at most a torn last line without its newline,
which the next run drops before it appends.  The restored image and curve of a row are
written (atomically) before the row, so a row always has its files.  One
run at a time holds the folder's lock
(:func:`~isnas_fast.io.records.writer_lock`); a job's row found twice is
read once (the first), with a warning.
"""
from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any, Iterator, Mapping

from ..errors import InputError
from ..io.files import atomic_write_json
from ..io.records import RecordLog, first_of_each, writer_lock
from .jobs import record_differences, settings_hash

__all__ = ["ResultStore", "SETTINGS_FILE", "RESULTS_FILE", "FORMAT"]

SETTINGS_FILE = "suite.json"
RESULTS_FILE = "results.jsonl"
LOCK_FILE = ".suite.lock"
FORMAT = "isnas-fast suite 1"


class ResultStore:
    """The suite folder ``folder``: its settings, its rows, its lock."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.results = self.folder / RESULTS_FILE
        self.settings_file = self.folder / SETTINGS_FILE
        self.log = RecordLog(self.results)

    @contextlib.contextmanager
    def locked(self) -> Iterator["ResultStore"]:
        """Hold the folder for this run; another run into it raises InputError at once."""
        with writer_lock(self.folder, what="suite", name=LOCK_FILE):
            yield self

    def check_settings(self, record: Mapping[str, Any], images: Mapping[str, Mapping[str, Any]]) -> None:
        """Refuse a folder that holds another suite's results; record the settings and images.

        ``record``: the settings record (:func:`~isnas_fast.suite.jobs.settings_record`);
        ``images``: image name -> ``{"source", "sha256"}``.  Adding images,
        methods or seeds to a suite is allowed; a changed setting, or an
        image whose file changed under the same name, is not.
        """
        stored: dict[str, Any] = {}
        if self.settings_file.exists():
            try:
                stored = json.loads(self.settings_file.read_text())
            except (OSError, ValueError) as e:
                raise InputError(f"{self.settings_file} is unreadable ({e}); it is not a suite folder, or "
                                 "was damaged: use another --out folder") from None
            if stored.get("format") != FORMAT:
                raise InputError(f"{self.settings_file} was not written by isnas-fast suite; use another --out "
                                 "folder")
            diff = record_differences(stored.get("settings", {}), record)
            if diff:
                raise InputError(f"{self.folder} holds the results of a suite with other settings "
                                 f"({'; '.join(diff)}); use another --out folder or the same settings")
            for name, info in images.items():
                old = stored.get("images", {}).get(name)
                if old is not None and old.get("sha256") != info["sha256"]:
                    raise InputError(f"image {name} ({info['source']}) differs from the one the results in "
                                     f"{self.folder} were made from ({old.get('source')}); use another --out "
                                     "folder or rename the image")
        elif self.results.exists():
            raise InputError(f"{self.folder} has {RESULTS_FILE} but no {SETTINGS_FILE}: not a suite folder this "
                             "version can resume; use another --out folder")
        merged = {**stored.get("images", {}), **{k: dict(v) for k, v in images.items()}}
        if stored.get("images") != merged or not stored:
            atomic_write_json(self.settings_file,
                              {"format": FORMAT, "hash": settings_hash(record), "settings": record, "images": merged})

    def rows(self) -> dict[str, dict]:
        """The finished rows by job key, after dropping a torn last line left by a
        killed run; a key found twice keeps its first row (one warning)."""
        return {row.get("job", ""): row
                for row in first_of_each(self.log.read(), lambda r: r.get("job", ""), source=self.results)}

    def append(self, row: Mapping[str, Any]) -> None:
        """Append one row: one line, one write, flushed to disk before returning."""
        self.log.append(row)
