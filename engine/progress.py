"""The project's progress displays: `ProgressBar` for training loops (step, bar, named values, steps/s and ETA)
and `Progress` for counted work (images, queries, rows). Neither imports TensorFlow.

On a terminal a line is redrawn in place; otherwise (logs, CI) only plain lines are written, without carriage
returns or ANSI codes: `ProgressBar` prints one when `update(..., force=True)` is called (once per logging step),
`Progress` one every `log_seconds` and one at the end.
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


class Progress:
    """Counted work (images embedded, queries ranked, persons extracted): `update(done)` or `add(count)`.

    The project's one progress display outside the training loop (it replaces keras.utils.Progbar, which writes
    ANSI codes and carriage returns into redirected logs and loads TensorFlow). On a terminal one line is redrawn
    in place at most every `refresh_seconds`; otherwise a plain line is printed at most every `log_seconds` and
    once at the end, so a log file gets a few readable lines. `enabled=False` prints nothing.
    """

    def __init__(self, total: int, unit: str = "item", enabled: bool = True, stream=None, width: int = 24,
                 refresh_seconds: float = 0.2, log_seconds: float = 10.0):
        self.total, self.unit, self.enabled, self.width = int(total), unit, bool(enabled), width
        self.stream = stream if stream is not None else sys.stdout
        self.interactive = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = refresh_seconds if self.interactive else log_seconds
        self.done = 0
        self._start = time.monotonic()
        self._last_draw = None  # the first update after `interval` seconds (or the end) is drawn

    def add(self, count: int = 1) -> str | None:
        return self.update(self.done + count)

    def update(self, done: int) -> str | None:
        """Record that `done` of `total` are finished; draw when due or finished. Returns the drawn line."""
        self.done = int(done)
        now = time.monotonic()
        finished = self.done >= self.total
        if not self.enabled or not (finished or now - (self._last_draw or self._start) >= self.interval):
            return None
        elapsed = now - self._start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        fraction = min(self.done / self.total, 1.0) if self.total else 1.0
        filled = int(round(fraction * self.width))
        line = f"{self.done}/{self.total} [{'=' * filled}{'.' * (self.width - filled)}] {rate:.1f} {self.unit}/s"
        line += f" in {format_duration(elapsed)}" if finished else (
            f" ETA {format_duration((self.total - self.done) / rate)}" if rate > 0 else "")
        if self.interactive:
            self.stream.write("\r" + line + "\033[K" + ("\n" if finished else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
        self._last_draw = now
        if finished:
            self.enabled = False  # one final line, however often update(total) is called
        return line
