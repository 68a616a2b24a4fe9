"""Logging and progress for long loops: a rich bar on a terminal, a few plain log lines elsewhere."""
from __future__ import annotations

import logging
import sys
import time
from typing import Iterable, Iterator, TypeVar

logger = logging.getLogger("augment")
T = TypeVar("T")


def track(items: Iterable[T], total: int, description: str) -> Iterator[T]:
    """Yield items while showing progress; in a log (no TTY) report about every 10% and the rate."""
    if sys.stderr.isatty():
        from rich.progress import Progress, BarColumn, MofNCompleteColumn, TimeElapsedColumn, TimeRemainingColumn

        columns = ("{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
        with Progress(*columns, transient=True) as bar:
            task = bar.add_task(description, total=total)
            for item in items:
                yield item
                bar.advance(task)
        logger.info("%s: %d done", description, total)
        return
    start = time.perf_counter()
    step = max(1, total // 10)
    done = 0
    for item in items:
        yield item
        done += 1
        if done % step == 0 or done == total:
            elapsed = time.perf_counter() - start
            logger.info("%s: %d/%d (%.0f s)", description, done, total, elapsed)
