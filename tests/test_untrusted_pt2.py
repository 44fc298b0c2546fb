"""Untrusted .pt2 packages: archives whose members would land outside the loader's folder, links,
duplicates and zip bombs are refused before torch's loader sees them; a failed load leaves no
unpacked files behind.

Every package here is a small zip built in the test with the layout torch's loader expects
(``<root>/archive_format``, ``<root>/data/aotinductor/model/...``); none is a working model.
"""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
import warnings
import zipfile

import pytest
import torch

import isnas_fast.export.aoti as aoti
from isnas_fast.cli import main
from isnas_fast.errors import InputError
from isnas_fast.export import load_pt2, run_pt2
from isnas_fast.export.aoti import check_pt2_archive

MODEL = "package/data/aotinductor/model/"


def _package(path, members):
    """Write a zip at ``path`` with the layout of a .pt2 plus ``members`` (name or ZipInfo, bytes)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile warns about the duplicate-name case
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("package/archive_format", "pt2")
            zf.writestr("package/archive_version", "0")
            zf.writestr(MODEL + "model_metadata.json", '{"AOTI_DEVICE_KEY": "cpu"}')
            for name, data in members:
                zf.writestr(name, data)
    return path


@pytest.fixture
def loader_spy(monkeypatch):
    """Replaces torch's package loader; records whether it was reached."""
    calls = []

    def spy(*args, **kwargs):
        calls.append(args)
        raise AssertionError("torch's loader must not see this package")

    monkeypatch.setattr(torch._inductor, "aoti_load_package", spy)
    return calls


def _symlink(name, target):
    info = zipfile.ZipInfo(name)
    info.create_system = 3  # Unix: external_attr carries the file type
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info, target


ESCAPES = [
    ("package/data/aotinductor/model/../../../../../escape.so", "'..' component"),
    ("../escape.so", "'..' component"),
    ("package/..", "'..' component"),
    ("/tmp/escape.so", "absolute path"),
    ("C:/escape.so", "absolute path"),
    ("c:escape.so", "absolute path"),
    ("package\\..\\..\\escape.so", "backslash"),
]


@pytest.mark.parametrize("name, why", ESCAPES)
def test_escaping_member_refused_before_the_loader(tmp_path, loader_spy, name, why):
    pkg = _package(tmp_path / "evil.pt2", [(name, b"\x7fELF junk")])
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(InputError, match=f"refusing .*evil.pt2: member .* has an? {why}") as info:
        load_pt2(pkg)
    assert "\n" not in str(info.value)
    assert loader_spy == []
    assert sorted(os.listdir(tmp_path)) == before
    with pytest.raises(InputError, match=why):
        run_pt2(pkg)


def test_symlink_member_refused(tmp_path, loader_spy):
    pkg = _package(tmp_path / "link.pt2", [_symlink(MODEL + "model.so", b"/etc/passwd")])
    with pytest.raises(InputError, match=r"member 'package/data/aotinductor/model/model.so' is a symbolic link"):
        load_pt2(pkg)
    assert loader_spy == []


def test_duplicate_member_refused(tmp_path, loader_spy):
    pkg = _package(tmp_path / "dup.pt2", [(MODEL + "model.so", b"a"), (MODEL + "model.so", b"b")])
    with pytest.raises(InputError, match="model.so' appears twice"):
        load_pt2(pkg)
    assert loader_spy == []


def test_zip_bomb_member_refused(tmp_path, loader_spy):
    with zipfile.ZipFile(tmp_path / "bomb.pt2", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("package/archive_format", "pt2")
        zf.writestr(MODEL + "model.so", b"\0" * (4 << 20))  # 4 MiB of zeros deflate to about 4 KiB
    with pytest.raises(InputError, match=r"unpacks to 4194304 bytes from \d+ \(more than 100 times"):
        load_pt2(tmp_path / "bomb.pt2")
    assert loader_spy == []


def test_member_count_and_total_size_limits(tmp_path, loader_spy, monkeypatch):
    pkg = _package(tmp_path / "many.pt2", [(MODEL + f"k{i}.cubin", b"x" * 1000) for i in range(8)])
    check_pt2_archive(pkg)  # within the real limits
    monkeypatch.setattr(aoti, "MAX_PT2_MEMBERS", 10)
    with pytest.raises(InputError, match="11 members, more than the 10 a package may hold"):
        load_pt2(pkg)
    monkeypatch.setattr(aoti, "MAX_PT2_MEMBERS", 100)
    monkeypatch.setattr(aoti, "MAX_PT2_BYTES", 5000)
    with pytest.raises(InputError, match=r"unpacks to \d+ bytes, more than the 5000 a package may"):
        load_pt2(pkg)
    assert loader_spy == []


def test_failed_load_leaves_no_unpacked_files(tmp_path, monkeypatch):
    """A well-formed archive whose library is junk: torch unpacks it, fails, and the folder is removed."""
    pkg = _package(tmp_path / "junk.pt2", [(MODEL + "model.so", b"not a shared library" * 8)])
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    tmpdir_before = os.environ.get("TMPDIR")
    with pytest.raises(InputError, match="cannot load TorchInductor package") as info:
        load_pt2(pkg)
    # the loader did unpack (its error names the unpacked library in this call's own folder) ...
    assert "aotinductor_" in str(info.value) and str(tmp) in str(info.value)
    # ... and nothing of it is left
    assert os.listdir(tmp) == []
    assert os.environ.get("TMPDIR") == tmpdir_before


def test_successful_load_keeps_its_folder_until_the_model_is_gone(tmp_path, monkeypatch):
    """The folder torch unpacks into lives as long as the model (a CUDA package reads kernels from it)."""
    import gc

    class Model:
        def get_metadata(self):
            return {}

    def fake_loader(path):
        folder = os.path.join(os.environ["TMPDIR"], "aotinductor_test")
        os.makedirs(folder)
        return Model()

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    monkeypatch.setattr(torch._inductor, "aoti_load_package", fake_loader)
    model = load_pt2(_package(tmp_path / "ok.pt2", [(MODEL + "model.so", b"x")]))
    (work,) = os.listdir(tmp)
    assert os.listdir(tmp / work) == ["aotinductor_test"]
    del model
    gc.collect()
    assert os.listdir(tmp) == []


# ---------------------------------------------------------------- a library that runs code when loaded

CONSTRUCTOR = textwrap.dedent("""
    #include <stdio.h>
    #include <stdlib.h>
    __attribute__((constructor)) static void payload(void) {
        const char *path = getenv("ISNAS_TEST_MARKER");
        if (path) { FILE *f = fopen(path, "w"); if (f) { fputs("ran", f); fclose(f); } }
    }
""")


@pytest.fixture(scope="module")
def payload_so(tmp_path_factory):
    """A shared library whose constructor writes the file named by $ISNAS_TEST_MARKER."""
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None or not sys.platform.startswith("linux"):
        pytest.skip("no C compiler on PATH (or not Linux): cannot build the payload library")
    d = tmp_path_factory.mktemp("payload")
    (d / "payload.c").write_text(CONSTRUCTOR)
    proc = subprocess.run([cc, "-shared", "-fPIC", "-o", str(d / "payload.so"), str(d / "payload.c")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return (d / "payload.so").read_bytes()


def test_payload_library_runs_code_when_loaded(payload_so, tmp_path):
    """Control: the library below really runs its constructor when a process loads it."""
    (tmp_path / "p.so").write_bytes(payload_so)
    marker = tmp_path / "control"
    proc = subprocess.run([sys.executable, "-c", f"import ctypes; ctypes.CDLL({str(tmp_path / 'p.so')!r})"],
                          env={**os.environ, "ISNAS_TEST_MARKER": str(marker)}, timeout=60)
    assert proc.returncode == 0 and marker.read_text() == "ran"


@pytest.mark.parametrize("name", [
    MODEL + "../../../../../../payload.so",
    "/tmp/isnas-fast-test-payload.so",
    MODEL + "model.so\\..\\..\\payload.so",
])
def test_malicious_package_refused_before_its_library_loads(payload_so, tmp_path, monkeypatch, name):
    marker = tmp_path / "ran"
    monkeypatch.setenv("ISNAS_TEST_MARKER", str(marker))
    pkg = _package(tmp_path / "evil.pt2", [(name, payload_so)])
    with pytest.raises(InputError, match="refusing .*evil.pt2: member"):
        load_pt2(pkg)
    assert not marker.exists()
    assert not os.path.exists("/tmp/isnas-fast-test-payload.so")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.pt2"]


def test_malicious_symlinked_library_refused(payload_so, tmp_path, monkeypatch):
    marker = tmp_path / "ran"
    monkeypatch.setenv("ISNAS_TEST_MARKER", str(marker))
    (tmp_path / "payload.so").write_bytes(payload_so)
    pkg = _package(tmp_path / "evil.pt2", [_symlink(MODEL + "model.so", str(tmp_path / "payload.so").encode())])
    with pytest.raises(InputError, match="is a symbolic link"):
        load_pt2(pkg)
    assert not marker.exists()


# ---------------------------------------------------------------- CLI

def test_cli_run_refuses_in_one_line_exit_2(tmp_path, capsys, loader_spy):
    pkg = _package(tmp_path / "evil.pt2", [("../escape.so", b"x")])
    capsys.readouterr()
    rc = main(["run", str(pkg), "-o", str(tmp_path / "out.png")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert err[0].startswith("isnas-fast: error: refusing ") and "'..' component" in err[0]
    assert not (tmp_path / "out.png").exists() and loader_spy == []


def test_run_help_says_pt2_is_code(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "A .pt2 package is executable native code" in text and "someone you trust" in text
