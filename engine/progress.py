"""A one-line progress display for training loops: step, bar, named values, steps/s and ETA.

On a terminal the line is redrawn in place at most every `refresh_seconds`; otherwise (logs, CI) a full line is
printed only when `update(..., force=True)` is called, so log files get one line per logging step.
"""
from __future__ import annotations

import sys
import time


def format_duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


class ProgressBar:
    """Progress from `initial` (a resumed run's first step) to `target` steps.

    The rate is measured from the first `update` on, so the time spent tracing the first step and the steps done
    before a resume do not distort steps/s and ETA.
    """

    def __init__(self, target: int, initial: int = 0, stream=None, width: int = 24, refresh_seconds: float = 0.5,
                 enabled: bool = True):
        self.target = int(target)
        self.stream = stream if stream is not None else sys.stdout
        self.width = width
        self.refresh_seconds = refresh_seconds
        self.enabled = enabled
        self.interactive = bool(getattr(self.stream, "isatty", lambda: False)())
        self._start_step = int(initial)
        self._start_time = None
        self._last_draw = 0.0

    def due(self) -> bool:
        """Whether an update now would be drawn (lets callers skip fetching values from the device)."""
        return self.enabled and self.interactive and time.monotonic() - self._last_draw >= self.refresh_seconds

    def steps_per_second(self, step: int, now: float | None = None) -> float:
        if self._start_time is None or step <= self._start_step:
            return 0.0
        now = time.monotonic() if now is None else now
        return (step - self._start_step) / max(now - self._start_time, 1e-9)

    def update(self, step: int, values: dict[str, float] | None = None, force: bool = False) -> str | None:
        """Record that `step` steps are done; draw the line when due (or `force`). Returns the drawn line."""
        now = time.monotonic()
        if self._start_time is None:
            self._start_time, self._start_step = now, int(step)
        if not self.enabled or not (force or self.due() or step >= self.target):
            return None
        rate = self.steps_per_second(step, now)
        eta = format_duration((self.target - step) / rate) if rate > 0 else "?"
        done = min(step / self.target, 1.0) if self.target else 1.0
        filled = int(round(done * self.width))
        bar = "=" * filled + "." * (self.width - filled)
        shown = " ".join(f"{name} {value:.4g}" for name, value in (values or {}).items())
        line = " ".join(part for part in (f"step {step}/{self.target} [{bar}]", shown,
                                          f"{rate:.2f} steps/s ETA {eta}") if part)
        if self.interactive:
            self.stream.write("\r" + line + "\033[K" + ("\n" if step >= self.target else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
        self._last_draw = now
        return line
