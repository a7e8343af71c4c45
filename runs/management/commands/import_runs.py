"""`manage.py import_runs PATH... [-]`: load sink bodies from files, folders or standard input."""

import time
from contextlib import nullcontext

from django.core.management.base import BaseCommand, CommandError

from runs.importer import BATCH_SIZE, import_inputs
from runs.readahead import ReaderFailed, peak_kib
from runs.reading import UsageError, inputs
from runs.management.progress import progress_bar


class Command(BaseCommand):
    help = (
        "Import Intuned sink bodies: .json files (one body or an array of bodies, as the S3 sink "
        "and API downloads write them), .jsonl files (one body per line, as `intuned dev test-job "
        "download` writes), directories (recursively) and '-' for standard input. Bodies that are "
        "refused are reported with file and line and kept in the quarantine. Importing the same "
        "files again changes nothing. Exit status: 0 all imported, 1 something was refused, "
        "2 usage error."
    )
    stealth_options = ("stdin",)

    def add_arguments(self, parser):
        parser.add_argument("paths", nargs="+", metavar="PATH", help="file, directory, or -")
        parser.add_argument(
            "--format",
            choices=["auto", "json", "jsonl"],
            default="auto",
            help="How to read the inputs. auto: by suffix (.json is JSON, anything else JSONL); "
            "standard input is a JSON array if it starts with '[', else JSONL.",
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            default=BATCH_SIZE,
            help=f"Bodies stored per transaction (default {BATCH_SIZE}).",
        )

    def handle(self, *args, paths, format, batch_size, **options):
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1", returncode=2)
        if paths.count("-") > 1:
            raise CommandError("'-' (standard input) can be given only once", returncode=2)
        try:
            items = inputs(paths, fmt=format)
        except UsageError as error:
            raise CommandError(str(error), returncode=2) from None

        progress = progress_bar(self.stdout, transfer=True)
        try:
            summary = self._import(items, batch_size, progress, options.get("stdin"))
        except (OSError, ReaderFailed) as error:
            raise CommandError(f"reading the inputs failed: {error}; the batches before it are stored") from error
        except KeyboardInterrupt:  # a long import stopped with Ctrl-C: no traceback, say what stands
            raise CommandError(
                "interrupted: the batches before it are stored, and importing the same files again "
                "skips their bodies as duplicates",
                returncode=130,
            ) from None
        self.stdout.write(f"Imported: {summary.line()}")
        if options["verbosity"] >= 2:  # for the benchmark, which adds them up: the import's memory is both
            self.stdout.write(
                f"Peak memory: {peak_kib() / 1024:.0f} MB in this process, "
                f"{summary.reader_peak_kib / 1024:.0f} MB in its reading process"
            )
            # The benchmark takes the reading process's CPU time as the whole import's (wait4
            # counts a process's reaped children) less this one's.
            self.stdout.write(f"CPU time: {time.process_time():.2f} s in this process")
        if summary.rejected:
            what = "1 body was" if summary.rejected == 1 else f"{summary.rejected} bodies were"
            raise CommandError(f"{what} refused (listed above) and kept in the quarantine", returncode=1)

    def _import(self, items, batch_size, progress, stdin):
        with progress or nullcontext():
            if progress:
                sizes = [item.size for item in items]
                total = None if None in sizes else sum(sizes)  # standard input: no known size
                task = progress.add_task("importing", total=total)
            summary = import_inputs(
                items,
                batch_size=batch_size,
                on_problem=lambda message: self.stderr.write(f"refused {message}"),
                on_progress=(
                    (lambda done: progress.update(task, completed=done)) if progress else (lambda done: None)
                ),
                stdin=stdin,
            )
        return summary

