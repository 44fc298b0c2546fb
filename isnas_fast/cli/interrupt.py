"""Ctrl-C that always stops the command.

Python turns SIGINT into a ``KeyboardInterrupt`` in the main thread at its
next bytecode, and the command unwinds (outputs are written atomically, so
nothing is left half-written).  Two things can lose it: the exception may be
raised inside a callback whose errors Python ignores (a weak-reference or
finaliser callback of ``torch.compile``'s machinery, while the CPU compiles),
and the main thread may sit in native code for a long time.  So a watcher
thread, woken by the signal itself (``signal.set_wakeup_fd``, independent of
the main thread), gives the ordinary unwinding ``grace`` seconds; if the
process is still alive then, or at a second Ctrl-C, it says so and exits at
once with status 130.

After an interrupt has unwound, :func:`exit_interrupted` ends the process
without the interpreter's finalisation: ``torch.compile``'s machinery,
interrupted mid-compile, can abort (SIGABRT) while the interpreter tears it
down, which would turn a clean Ctrl-C into a crash report.
"""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import threading
import time
from typing import Iterator

__all__ = ["EXIT_INTERRUPTED", "GRACE_SECONDS", "exit_interrupted", "stop_on_interrupt"]

#: The shell's status for a process ended by SIGINT.
EXIT_INTERRUPTED = 130
#: Seconds the ordinary ``KeyboardInterrupt`` unwinding gets before the process exits anyway.
GRACE_SECONDS = 3.0


def _hard_exit(prog: str) -> None:
    # Called from the watcher thread while the main thread runs: it touches
    # stderr only (stdout's buffer lock may be held by the main thread, where
    # exit_interrupted's flush could wait for ever).
    try:
        sys.stderr.write(f"\n{prog}: interrupted\n")
        sys.stderr.flush()
    finally:
        os._exit(EXIT_INTERRUPTED)


def exit_interrupted() -> None:
    """End the process now with status 130, after flushing stdout and stderr, and
    without interpreter finalisation (``finally`` blocks and context exits have
    already run as the interrupt unwound; atexit handlers and module teardown do
    not).  For the command-line entry point only, never inside a library call."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
    os._exit(EXIT_INTERRUPTED)


@contextlib.contextmanager
def stop_on_interrupt(prog: str, grace: float = GRACE_SECONDS) -> Iterator[None]:
    """Within the block, SIGINT raises ``KeyboardInterrupt`` as usual, and a
    watcher exits the process with status 130 ``grace`` seconds after the
    first SIGINT, or at the second, unless the block has ended first without
    one.  Does nothing outside the main thread (signals reach only it) or
    where SIGINT is not Python's default handler (someone else handles it)."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield
        return
    reader, writer = socket.socketpair()
    writer.setblocking(False)
    try:
        previous_fd = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    except (ValueError, OSError):  # not supported here: the ordinary behaviour only
        reader.close()
        writer.close()
        yield
        return
    interrupted = threading.Event()
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            try:
                data = reader.recv(64)
            except OSError:
                return
            if not data:
                return
            # One read may hold several signals (two quick Ctrl-Cs while this
            # thread waited for its turn): each SIGINT counts.
            for _ in range(data.count(signal.SIGINT)):
                if interrupted.is_set():
                    _hard_exit(prog)
                interrupted.set()
                threading.Thread(target=expire, daemon=True).start()

    def expire() -> None:
        # After an interrupt the process must end: the block ending is not enough.
        time.sleep(grace)
        _hard_exit(prog)

    watcher = threading.Thread(target=watch, name="isnas-fast-interrupt", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        signal.set_wakeup_fd(previous_fd)
        if not interrupted.is_set():
            done.set()
            writer.close()  # the watcher's recv sees the end of the stream and returns
            watcher.join(timeout=1.0)
            reader.close()
