"""A one-line progress bar (count, rate, ETA and a caller's note such as running accuracy).

It draws only when its stream is a terminal, so pipes and log files stay clean."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def format_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}"


class Progress:
    def __init__(self, total: int, label: str = "", stream: TextIO | None = None,
                 enabled: bool | None = None, width: int = 24, min_interval: float = 0.1):
        self.total = total
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        if enabled is None:
            isatty = getattr(self.stream, "isatty", None)
            enabled = bool(isatty and isatty())
        self.enabled = enabled
        self.width = width
        self.min_interval = min_interval
        self.done = 0
        self.note = ""
        self._start = time.perf_counter()
        self._last_draw = 0.0

    def line(self) -> str:
        elapsed = time.perf_counter() - self._start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        frac = self.done / self.total if self.total else 1.0
        filled = int(self.width * frac)
        bar = "#" * filled + "." * (self.width - filled)
        eta = (self.total - self.done) / rate if rate > 0 else float("nan")
        eta_text = format_duration(eta) if rate > 0 else "?"
        parts = [f"{self.label} " if self.label else "", f"[{bar}] {self.done}/{self.total}",
                 f" {rate:.1f} img/s ETA {eta_text}"]
        if self.note:
            parts.append(f" {self.note}")
        return "".join(parts)

    def update(self, n: int = 1, note: str | None = None) -> None:
        self.done += n
        if note is not None:
            self.note = note
        if not self.enabled:
            return
        now = time.perf_counter()
        if now - self._last_draw >= self.min_interval or self.done >= self.total:
            self._last_draw = now
            self.stream.write("\r" + self.line() + "\x1b[K")
            self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\r" + self.line() + "\x1b[K\n")
            self.stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
