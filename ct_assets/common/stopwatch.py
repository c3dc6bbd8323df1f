"""Where a step's time goes: seconds per named phase, shown in its metadata."""

import time


class Stopwatch:
    """Seconds spent in the named phases of a step, for its metadata (where a step's time goes)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, phase: str) -> None:
        """Close `phase`: the time since the previous lap (or since the start)."""
        now = time.perf_counter()
        self.seconds[phase] = round(self.seconds.get(phase, 0.0) + now - self._last, 3)
        self._last = now
