"""Progress on long work, on stderr so stdout stays for results and `--json`.

A Reporter prints a one-line summary per plan node (cache hit, or the time it took) and gives
passes progress bars (`with reporter.track("trace clean", total=n, unit="prompts") as bar:
bar.advance(k)`) that show the rate and what is left. Quiet mode prints warnings only; verbose
adds what each pass chose (batch sizes, selections).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TaskProgressColumn, TextColumn, TimeRemainingColumn
from rich.text import Text


class RateColumn(ProgressColumn):
    """Items per second (prompts/s), the figure that says whether a batch size is sensible."""

    def __init__(self, unit: str):
        super().__init__()
        self.unit = unit

    def render(self, task) -> Text:
        return Text(f"{task.speed:.1f} {self.unit}/s" if task.speed else "", style="cyan")


class Bar:
    def __init__(self, progress: Progress | None, task: Any):
        self._progress, self._task = progress, task

    def advance(self, n: int = 1) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, n)


class Reporter:
    def __init__(self, level: str = "normal", console: Console | None = None):
        if level not in ("quiet", "normal", "verbose"):
            raise ValueError(f"unknown verbosity {level!r}")
        self.level = level
        self.console = console or Console(stderr=True, highlight=False)

    def node_started(self, node: Any, index: int, total: int) -> None:
        if self.level == "verbose":
            self.console.print(f"[dim]\\[{index}/{total}][/dim] {escape(node.id)} ...")

    def node_finished(self, node: Any, index: int, total: int, cached: bool, seconds: float) -> None:
        if self.level == "quiet":
            return
        how = "[green]cached[/green]" if cached else f"{seconds:.1f} s"
        self.console.print(f"[dim]\\[{index}/{total}][/dim] {escape(node.id)}: {how}")

    def info(self, message: str) -> None:
        if self.level != "quiet":
            self.console.print(escape(message))

    def detail(self, message: str) -> None:
        if self.level == "verbose":
            self.console.print(f"[dim]{escape(message)}[/dim]")

    def warn(self, message: str) -> None:
        self.console.print(f"[yellow]warning:[/yellow] {escape(message)}")

    @contextmanager
    def track(self, description: str, total: int, unit: str = "prompts") -> Iterator[Bar]:
        if self.level == "quiet" or not self.console.is_terminal and self.level != "verbose":
            # Not a terminal (CI, a pipe): a bar would print one line per refresh; stay silent.
            yield Bar(None, None)
            return
        columns = (
            TextColumn("  {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(unit),
            RateColumn(unit),
            TaskProgressColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=self.console, transient=True) as progress:
            yield Bar(progress, progress.add_task(description, total=total))
