"""Rich progress bars (bytes, rate, ETA) that go quiet when stderr is not a terminal or output is --json."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

Advance = Callable[[int], None]


def _noop(_: int) -> None:
    return None


class Reporter:
    """Hands out byte-progress callbacks; a silent one when not on a terminal."""

    def __init__(self, enabled: bool | None = None, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.enabled = self.console.is_terminal if enabled is None else enabled
        self._progress: Progress | None = None

    @contextmanager
    def running(self) -> Iterator[Reporter]:
        if not self.enabled:
            yield self
            return
        self._progress = Progress(
            TextColumn("[bold]{task.description}", justify="left"),
            BarColumn(),
            DownloadColumn(binary_units=True),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        with self._progress:
            yield self
        self._progress = None

    def task(self, description: str, total: int | None) -> Advance:
        progress = self._progress
        if progress is None:
            return _noop
        task_id: TaskID = progress.add_task(description[:48], total=total)

        def advance(n: int) -> None:
            progress.advance(task_id, n)

        return advance

    def note(self, message: str) -> None:
        if self.enabled:
            self.console.print(message)


def stderr_is_terminal() -> bool:
    return sys.stderr.isatty()
