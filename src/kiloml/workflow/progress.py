"""Progress of a long step on stderr: a rich bar on a terminal, a few plain lines otherwise
(logs of CI jobs stay short), nothing when disabled."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


@contextmanager
def counter(title: str, total: int, enabled: bool = True,
            unit: str = "") -> Iterator[Callable[[int], None]]:
    """Yields ``update(done)``; ``done`` counts up to ``total``."""
    if not enabled or total <= 0:
        yield lambda done: None
        return
    console = Console(stderr=True)
    if console.is_terminal:
        bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(bar_width=20),
                       MofNCompleteColumn(), TimeRemainingColumn(), console=console,
                       transient=True)
        with bar:
            task = bar.add_task(title, total=total)
            yield lambda done: bar.update(task, completed=done)
        return
    shown = [0]

    def update(done: int) -> None:
        # at most about ten lines: every tenth of the way and the end
        if done >= total or done - shown[0] >= max(1, total // 10):
            shown[0] = done
            console.print(f"  {title}: {done:,}/{total:,}{unit}", markup=False,
                          highlight=False)

    yield update


__all__ = ["counter"]
