"""Progress lines for a DIP run whose output goes to a log, where no progress bar is drawn."""
from __future__ import annotations

import sys
import time
from typing import Optional, TextIO

__all__ = ["LogLines", "LOG_EVERY_SECONDS", "format_duration"]

#: Seconds between two progress lines in a log.
LOG_EVERY_SECONDS = 60.0


def format_duration(seconds: float) -> str:
    """A duration for people: ``"2.1 s"``, ``"42 s"``, ``"3.5 min"``, ``"1.2 h"``."""
    if seconds < 60:
        return f"{seconds:.2g} s" if seconds < 10 else f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


class LogLines:
    """One plain line at most every ``every`` seconds (``"final: step 250/2400,
    14.0 min elapsed, at most 2.1 h left at this pace"``) to ``stream``
    (default: standard error), for runs whose progress bar is not drawn
    (``enabled``: the bar is disabled because the stream is not a terminal,
    and the run is not quiet; ``every``: default :data:`LOG_EVERY_SECONDS`).
    "At most": the early stop may end it sooner.
    """

    def __init__(self, total: int, desc: str, *, enabled: bool, stream: Optional[TextIO] = None,
                 every: Optional[float] = None) -> None:
        self.total, self.desc, self.enabled = int(total), desc, bool(enabled)
        self.every = LOG_EVERY_SECONDS if every is None else float(every)
        self.stream = stream
        self.t0 = self.last = time.perf_counter()

    def update(self, it: int) -> None:
        """Step ``it`` (1-based) is done: write a line if ``every`` seconds have passed since the last."""
        if not self.enabled:
            return
        now = time.perf_counter()
        if now - self.last < self.every:
            return
        self.last = now
        elapsed = now - self.t0
        left = elapsed / max(1, it) * (self.total - it)
        print(f"{self.desc}: step {it}/{self.total}, {format_duration(elapsed)} elapsed, "
              f"at most {format_duration(left)} left at this pace",
              file=self.stream if self.stream is not None else sys.stderr, flush=True)
