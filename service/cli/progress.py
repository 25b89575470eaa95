"""What a terminal user sees of a long command: one line per step, a progress bar (tqdm) on
long steps. Bars are drawn only on a terminal; piped output gets the step lines alone."""

from __future__ import annotations

import sys
import time
from typing import Any

from service.usecases import Progress


class TerminalProgress(Progress):
    """Step lines on stderr (through tqdm, so they never break a bar) and tqdm bars."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stderr
        self.started = time.perf_counter()

    def step(self, message: str) -> None:
        from tqdm import tqdm

        tqdm.write(f"[{time.perf_counter() - self.started:5.0f} s] {message}", file=self.stream)

    def bar(self, total: int, description: str) -> Any:
        from tqdm import tqdm

        return tqdm(total=total, desc=description, unit="date", file=self.stream, leave=False,
                    disable=not getattr(self.stream, "isatty", lambda: False)(),
                    dynamic_ncols=True)
