"""Ctrl-C stops every command at once, also while the CPU compiles, and leaves no output behind."""
from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from isnas_fast.cli.interrupt import EXIT_INTERRUPTED

pytestmark = pytest.mark.skipif(os.name != "posix", reason="sends SIGINT to a process group (POSIX)")


def _default_sigint() -> None:
    # A child inherits an ignored SIGINT (tests started as a background job, `make test &`):
    # each command under test starts as a terminal would start it, with the default action.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


#: Popen keywords: the child starts with SIGINT's default action.
CHILD = dict(preexec_fn=_default_sigint)


def _wait_for(proc: subprocess.Popen, text: str, timeout: float) -> str:
    seen, end = "", time.monotonic() + timeout
    while text not in seen and time.monotonic() < end and proc.poll() is None:
        ready, _, _ = select.select([proc.stderr], [], [], 0.5)
        if ready:
            seen += proc.stderr.readline()
    return seen


def _spinner(grace: float, on_interrupt: str) -> str:
    # Inside the block, SIGINT's Python handler is replaced by one that swallows it
    # (as a callback whose errors Python ignores does): only the watcher can end it.
    return textwrap.dedent(f"""
        import signal, sys, time
        from isnas_fast.cli.interrupt import stop_on_interrupt
        with stop_on_interrupt("prog", grace={grace}):
            signal.signal(signal.SIGINT, lambda *a: {on_interrupt})
            print("ready", file=sys.stderr, flush=True)
            end = time.monotonic() + 30
            while time.monotonic() < end:
                time.sleep(0.05)
        print("finished", file=sys.stderr, flush=True)
    """)


def test_an_interrupt_swallowed_inside_the_command_still_ends_it():
    proc = subprocess.Popen([sys.executable, "-c", _spinner(1.0, "None")], stderr=subprocess.PIPE, text=True, **CHILD)
    try:
        assert "ready" in _wait_for(proc, "ready", 60)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=20)
        waited = time.monotonic() - t0
    finally:
        proc.kill()
    rest = proc.stderr.read()
    assert rc == EXIT_INTERRUPTED and 0.9 <= waited < 10, (rc, waited)
    assert "prog: interrupted" in rest and "finished" not in rest


def test_a_second_interrupt_ends_it_at_once():
    swallow = 'print("swallowed", file=sys.stderr, flush=True)'
    proc = subprocess.Popen([sys.executable, "-c", _spinner(60.0, swallow)], stderr=subprocess.PIPE, text=True,
                            **CHILD)
    try:
        assert "ready" in _wait_for(proc, "ready", 60)
        proc.send_signal(signal.SIGINT)
        assert "swallowed" in _wait_for(proc, "swallowed", 10)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=20)
        assert rc == EXIT_INTERRUPTED and time.monotonic() - t0 < 5
    finally:
        proc.kill()


@pytest.mark.skipif(signal.getsignal(signal.SIGINT) is not signal.default_int_handler,
                    reason="this test process ignores SIGINT (started as a background job), so the block does nothing")
def test_an_uninterrupted_block_leaves_sigint_as_it_was_and_no_thread_behind():
    import signal as sig
    import threading

    from isnas_fast.cli.interrupt import stop_on_interrupt

    before = sig.set_wakeup_fd(-1)
    sig.set_wakeup_fd(before)
    threads = threading.active_count()
    for _ in range(3):
        with stop_on_interrupt("prog"):
            pass
    after = sig.set_wakeup_fd(-1)
    sig.set_wakeup_fd(after)
    assert after == before and sig.getsignal(sig.SIGINT) is sig.default_int_handler
    assert threading.active_count() == threads


def test_ctrl_c_while_the_cpu_compiles_stops_restore(tmp_path: Path, sample):
    # The real thing: `restore --compile` on a tiny image, SIGINT to its process
    # group (as a terminal sends it) during the first, compiling, step.
    from isnas_fast.io import save_image

    noisy, out = tmp_path / "noisy.png", tmp_path / "out.png"
    save_image(sample[..., :64, :64], noisy)
    exe = [sys.executable, "-m", "isnas_fast", "restore", str(noisy), "--task", "denoise", "--sigma", "25",
           "--arch", "nasdip-denoise", "--width", "16", "--compile", "--iterations", "40", "-o", str(out)]
    proc = subprocess.Popen(exe, stderr=subprocess.PIPE, text=True, start_new_session=True, cwd=tmp_path,
                            **CHILD)
    try:
        seen = _wait_for(proc, "compiling", 120)
        assert "compiling" in seen, seen[-2000:]
        time.sleep(2.0)  # inside Inductor's compile
        t0 = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)
        rc = proc.wait(timeout=30)
        waited = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    rest = proc.stderr.read()
    assert rc == EXIT_INTERRUPTED and waited < 10, (rc, waited, rest[-3000:])
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_two_interrupts_read_in_one_go_both_count():
    # A busy machine can leave the watcher waiting for its turn until both
    # signals' bytes are in its socket, so one read returns both.  The
    # process writes the two bytes in one write, as the signal handler
    # would have twice: the second must still end it at once.
    pair = textwrap.dedent("""
        import os, signal, sys, time
        from isnas_fast.cli.interrupt import stop_on_interrupt
        with stop_on_interrupt("prog", grace=60.0):
            fd = signal.set_wakeup_fd(-1)
            signal.set_wakeup_fd(fd)
            os.write(fd, bytes([signal.SIGINT, signal.SIGINT]))
            end = time.monotonic() + 30
            while time.monotonic() < end:
                time.sleep(0.05)
        print("finished", file=sys.stderr, flush=True)
    """)
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", pair], stderr=subprocess.PIPE, text=True, timeout=60, **CHILD)
    waited = time.monotonic() - t0
    assert proc.returncode == EXIT_INTERRUPTED and waited < 20, (proc.returncode, waited)
    assert "prog: interrupted" in proc.stderr and "finished" not in proc.stderr


def test_an_interrupted_command_exits_130_without_finalisation():
    # After the unwinding, the process ends at once: what was printed is
    # flushed, and the interpreter's teardown (atexit handlers here; torch.compile's
    # half-built state in a real run) never runs.
    code = textwrap.dedent("""
        import atexit, sys
        from isnas_fast.cli.interrupt import exit_interrupted
        atexit.register(lambda: print("finalised", file=sys.stderr, flush=True))
        print("unwound", end="")
        sys.stderr.write("said so")
        exit_interrupted()
        print("after", file=sys.stderr)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == EXIT_INTERRUPTED, proc.stderr
    assert proc.stdout == "unwound" and proc.stderr == "said so"


@pytest.mark.parametrize("status", [0, 2, EXIT_INTERRUPTED])
def test_the_console_entry_point_exits_with_mains_status(status: int):
    # Only an interrupted command skips the interpreter's teardown.
    code = textwrap.dedent(f"""
        import atexit, sys
        import isnas_fast.cli as cli
        atexit.register(lambda: print("finalised", file=sys.stderr, flush=True))
        cli.main = lambda argv=None: {status}
        cli.console()
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == status, proc.stderr
    assert ("finalised" in proc.stderr) == (status != EXIT_INTERRUPTED), proc.stderr
