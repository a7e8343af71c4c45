"""The progress bar the data commands show, only when a person is watching a terminal: a cron
job's or a test's output stays the plain summary."""

from django.core.management.base import OutputWrapper


def progress_bar(stdout: OutputWrapper, *, transfer: bool = False):
    """A rich Progress (use as a context manager), or None when stdout is not a terminal.
    transfer=True counts bytes (import), otherwise items."""
    if not stdout.isatty():
        return None
    from rich.console import Console
    from rich.progress import (
        BarColumn, DownloadColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
        TimeRemainingColumn, TransferSpeedColumn,
    )  # fmt: skip

    counts = (DownloadColumn(), TransferSpeedColumn()) if transfer else (MofNCompleteColumn(),)
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        *counts,
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(file=stdout._out),
        transient=True,
    )
