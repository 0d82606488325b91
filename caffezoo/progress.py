"""Progress bars on long work (eval, convert, export, time, validate, doctor), drawn by tqdm
on stderr.

A bar draws only when stderr is a terminal, so pipes, CI logs and files stay clean; the same
object is used either way, so callers never branch on it."""

from __future__ import annotations

import sys
from typing import TextIO


def on_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class Progress:
    """`total` steps of `unit` (images, layers, iterations); `update(n, note)` advances and
    shows `note` (e.g. the running top-1) after the rate and ETA. `initial` steps were done
    before (a resumed run): counted, but not in the rate."""

    def __init__(self, total: int | None, label: str = "", unit: str = "img",
                 stream: TextIO | None = None, enabled: bool | None = None,
                 min_interval: float = 0.1, delay: float = 0.0, initial: int = 0):
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = on_terminal(self.stream) if enabled is None else enabled
        try:
            from tqdm import tqdm  # pinned in pyproject.toml; imported only when a bar is made
        except ImportError:  # `doctor` runs where nothing is installed: no bar then
            self.enabled, self._bar = False, None
            return
        self._bar = tqdm(total=total, desc=label or None, unit=unit, file=self.stream,
                         disable=not self.enabled, mininterval=min_interval, leave=True,
                         dynamic_ncols=True, delay=delay, initial=initial)

    def update(self, n: int = 1, note: str | None = None) -> None:
        if not self.enabled:
            return
        if note is not None:
            self._bar.set_postfix_str(note, refresh=False)
        self._bar.update(n)

    def note(self, text: str) -> None:
        """Show `text` now, e.g. the phase that starts (without advancing)."""
        if self.enabled:
            self._bar.set_postfix_str(text, refresh=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def steps(items, total: int | None = None, label: str = "", unit: str = "it",
          delay: float = 0.0):
    """Iterate over `items` with a bar (quiet off a terminal; after `delay` seconds)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)
    with Progress(total, label=label, unit=unit, delay=delay) as bar:
        for item in items:
            yield item
            bar.update(1)
