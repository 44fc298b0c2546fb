"""Records and output files under hostile conditions: two writers on one folder,
rows written twice, a full or read-only disk, power cuts after a rename, and
non-finite numbers in JSON."""
from __future__ import annotations

import errno
import json
import math
import os
import stat
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
import torch

from isnas_fast.cli import main
from isnas_fast.cli.common import write_json
from isnas_fast.errors import InputError
from isnas_fast.io import atomic_path, atomic_write_folder, atomic_write_text, save_image
from isnas_fast.io.files import atomic_write_json, json_text, make_folder
from isnas_fast.io.records import RecordLog, guard_settings, writer_lock
from isnas_fast.study import run_study
from isnas_fast.study.runner import LOCK_FILE as STUDY_LOCK
from isnas_fast.suite.store import LOCK_FILE as SUITE_LOCK
from isnas_fast.suite.store import ResultStore
from isnas_fast.tasks import Denoise


def _strict_loads(text: str):
    """json.loads that fails on NaN/Infinity (what strict JSON readers do)."""
    def refuse(name):
        raise ValueError(f"non-standard JSON constant {name}")
    return json.loads(text, parse_constant=refuse)


@pytest.fixture
def lock_holder(tmp_path):
    """A second process holding the study and suite writer locks of tmp_path/out until the test ends."""
    out = tmp_path / "out"
    out.mkdir()
    code = textwrap.dedent(f"""
        import sys
        from isnas_fast.io.records import writer_lock
        with writer_lock(sys.argv[1], what="study", name={STUDY_LOCK!r}), \\
                writer_lock(sys.argv[1], what="suite", name={SUITE_LOCK!r}):
            print("held", flush=True)
            sys.stdin.read()  # until the test closes our standard input
    """)
    proc = subprocess.Popen([sys.executable, "-c", code, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        yield out
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)


def test_second_writer_is_refused_while_another_process_holds_the_folder(lock_holder, small, tmp_path, capsys):
    out = lock_holder
    with pytest.raises(InputError, match="another study run is writing to"):
        with writer_lock(out, what="study", name=STUDY_LOCK):
            pass
    with pytest.raises(InputError, match="another suite run is writing to"):
        with ResultStore(out).locked():
            pass
    # The command itself: one line, exit 2, and nothing written into the other run's folder.
    noisy = Denoise(25).corrupt(small, seed=1).y
    save_image(noisy, tmp_path / "noisy.png")
    save_image(small, tmp_path / "clean.png")
    capsys.readouterr()
    code = main(["study", str(tmp_path / "noisy.png"), "--task", "denoise", "--ground-truth",
                 str(tmp_path / "clean.png"), "--out", str(out), "--models", "random:3", "--iterations", "6",
                 "--cohort-iterations", "2", "--cohort-size", "2", "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "Traceback" not in err[0]
    assert err[0].startswith("isnas-fast: error: another study run is writing to")
    assert sorted(p.name for p in out.iterdir()) == sorted([STUDY_LOCK, SUITE_LOCK])


def test_lock_is_free_again_when_the_holder_ends(tmp_path):
    with writer_lock(tmp_path, what="study", name=STUDY_LOCK):
        with pytest.raises(InputError, match="another study run"):  # a second holder in the same process, too
            with writer_lock(tmp_path, what="study", name=STUDY_LOCK):
                pass
    with writer_lock(tmp_path, what="study", name=STUDY_LOCK):
        pass


def test_duplicated_study_rows_are_counted_once(small, tmp_path):
    noisy = Denoise(25).corrupt(small, seed=1).y
    kw = dict(ground_truth=small, out=tmp_path / "st", quiet=True, models="random:3", iterations=6,
              cohort_iterations=2, cohort_size=2)
    first = run_study(noisy, "denoise", **kw)
    assert first.analysis["n"] == 3
    rows_file = tmp_path / "st" / "rows.jsonl"
    lines = rows_file.read_text().splitlines()
    # What two runs writing into one folder at once left: every row twice.
    rows_file.write_text("".join(f"{line}\n{line}\n" for line in lines))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = run_study(noisy, "denoise", **kw)
    dup = [w for w in caught if "duplicate" in str(w.message)]
    assert len(dup) == 1 and f"{len(lines)} duplicate record(s)" in str(dup[0].message)
    assert again.analysis["n"] == 3
    assert json.loads((tmp_path / "st" / "study.json").read_text())["analysis"]["n"] == 3
    cands = [r for r in again.rows if r.get("kind") == "genotype" and r["role"] == "candidate"]
    assert len(cands) == 3 and len({r["genotype"] for r in cands}) == 3
    assert len(rows_file.read_text().splitlines()) == 2 * len(lines)  # nothing retrained, nothing appended


def test_duplicated_suite_rows_keep_the_first(tmp_path):
    store = ResultStore(tmp_path)
    store.append({"job": "a:nasdip:0", "psnr": 20.0})
    store.append({"job": "b:nasdip:0", "psnr": 21.0})
    store.append({"job": "a:nasdip:0", "psnr": 99.0})
    with pytest.warns(UserWarning, match="1 duplicate record") as caught:
        rows = store.rows()
    assert len([w for w in caught if "duplicate" in str(w.message)]) == 1
    assert list(rows) == ["a:nasdip:0", "b:nasdip:0"] and rows["a:nasdip:0"]["psnr"] == 20.0


# ------------------------------------------------------------ refused writes


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text
    return text


def test_full_disk_during_a_record_append(tmp_path, monkeypatch):
    log = RecordLog(tmp_path / "rows.jsonl")
    log.append({"a": 1})

    def full(fd, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(InputError) as e:
        log.append({"a": 2})
    assert _one_line(e.value) == f"cannot write {tmp_path / 'rows.jsonl'}: {os.strerror(errno.ENOSPC)}"
    monkeypatch.undo()
    assert log.read() == [{"a": 1}]


@pytest.mark.parametrize("code", [errno.EROFS, errno.EACCES])
def test_read_only_folder_for_records_lock_and_settings(tmp_path, monkeypatch, code):
    real_open = os.open

    def refuse(path, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise OSError(code, os.strerror(code))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", refuse)
    reason = os.strerror(code)
    with pytest.raises(InputError, match=f"cannot write .*rows.jsonl: {reason}$"):
        RecordLog(tmp_path / "rows.jsonl").append({"a": 1})
    with pytest.raises(InputError, match=f"cannot write .*{STUDY_LOCK}: {reason}$"):
        with writer_lock(tmp_path, what="study", name=STUDY_LOCK):
            pass
    with pytest.raises(InputError, match=f"cannot write .*settings.json: {reason}$"):  # mkstemp opens with O_CREAT
        guard_settings(tmp_path, {"a": 1}, name="settings.json", what="study")
    monkeypatch.undo()
    assert os.listdir(tmp_path) == []


def test_a_file_in_the_way_of_a_folder(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(InputError) as e:
        make_folder(tmp_path / "f" / "sub", "study folder")
    assert _one_line(e.value) == f"cannot create study folder {tmp_path / 'f' / 'sub'}: {os.strerror(errno.ENOTDIR)}"
    with pytest.raises(InputError, match=f"cannot write .*: {os.strerror(errno.ENOTDIR)}"):
        RecordLog(tmp_path / "f" / "rows.jsonl").append({"a": 1})


def test_cli_refused_folder_is_one_line(small, tmp_path, monkeypatch, capsys):
    noisy = Denoise(25).corrupt(small, seed=1).y
    save_image(noisy, tmp_path / "noisy.png")
    save_image(small, tmp_path / "clean.png")

    def refuse(*args, **kwargs):
        raise OSError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(os, "mkdir", refuse)
    capsys.readouterr()
    code = main(["study", str(tmp_path / "noisy.png"), "--task", "denoise", "--ground-truth",
                 str(tmp_path / "clean.png"), "--out", str(tmp_path / "st"), "--models", "random:3", "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == [f"isnas-fast: error: cannot create study folder {tmp_path / 'st'}: "
                                 f"{os.strerror(errno.EACCES)}"]


# ------------------------------------------------------------ durable renames


@pytest.fixture
def synced(monkeypatch):
    """Every os.fsync and os.replace, in order: ("fsync", is_folder, inode) and ("replace", dst)."""
    events: list[tuple] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        st = os.fstat(fd)
        events.append(("fsync", stat.S_ISDIR(st.st_mode), st.st_ino))
        return real_fsync(fd)

    def replace(src, dst, *args, **kwargs):
        real_replace(src, dst, *args, **kwargs)
        events.append(("replace", str(dst)))

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    return events


def _folder_synced_after_rename(events, folder, target) -> bool:
    ino = os.stat(folder).st_ino
    renamed = [i for i, e in enumerate(events) if e == ("replace", str(target))]
    return bool(renamed) and ("fsync", True, ino) in events[renamed[-1] + 1:]


def test_atomic_writers_sync_the_folder_after_the_rename(tmp_path, synced):
    atomic_write_text(tmp_path / "a.txt", "x")
    assert _folder_synced_after_rename(synced, tmp_path, tmp_path / "a.txt")
    synced.clear()
    with atomic_path(tmp_path / "b.bin") as tmp:
        tmp.write_bytes(b"y")
    assert _folder_synced_after_rename(synced, tmp_path, tmp_path / "b.bin")
    synced.clear()
    atomic_write_folder(tmp_path / "bundle", {"f": b"z"})
    assert _folder_synced_after_rename(synced, tmp_path, tmp_path / "bundle")


def test_a_new_records_file_syncs_its_folder(tmp_path, synced):
    log = RecordLog(tmp_path / "rows.jsonl")
    log.append({"a": 1})
    ino = os.stat(tmp_path).st_ino
    assert synced[-1] == ("fsync", True, ino)  # after the record itself was flushed
    assert synced[0][1] is False
    synced.clear()
    log.append({"a": 2})
    assert synced and all(not is_dir for _, is_dir, _ in synced)  # the name exists already


# ------------------------------------------------------------ strict JSON


def test_non_finite_numbers_become_null_in_every_json_writer(tmp_path, capsys):
    report = {"psnr": math.inf, "ssim": 1.0, "gap": -math.inf, "curve": [1.5, math.nan, 2.0],
              "np": np.float32("nan"), "arr": np.array([1.0, np.inf]), "t": torch.tensor(math.inf),
              "n": np.int64(3), "path": tmp_path, "nested": {"x": (math.nan,)}}
    expected = {"psnr": None, "ssim": 1.0, "gap": None, "curve": [1.5, None, 2.0], "np": None, "arr": [1.0, None],
                "t": None, "n": 3, "path": str(tmp_path), "nested": {"x": [None]}}
    assert _strict_loads(json_text(report)) == expected
    assert _strict_loads(json_text(report, indent=None, compact=True)) == expected
    atomic_write_json(tmp_path / "a.json", report)
    assert _strict_loads((tmp_path / "a.json").read_text()) == expected
    write_json(report, str(tmp_path / "r.json"))  # what restore --json writes
    assert _strict_loads((tmp_path / "r.json").read_text()) == expected
    capsys.readouterr()
    write_json(report, "-")
    assert _strict_loads(capsys.readouterr().out) == expected
    log = RecordLog(tmp_path / "rows.jsonl")
    log.append(report)
    assert _strict_loads((tmp_path / "rows.jsonl").read_text()) == expected


def test_plain_json_unchanged_by_the_strict_writer():
    data = {"b": [1, 2.5, "x", None, True], "a": {"k": -0.0}}
    assert json_text(data) == json.dumps(data, indent=2)
    assert json_text(data, sort_keys=True, indent=None) == json.dumps(data, sort_keys=True)
