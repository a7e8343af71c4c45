"""What a run contributes to each counter, added up per batch and written once per row.

Pages read totals from these rows (Project, Job, JobRun, FailureGroup, RunTally, FailureDay,
FailureJob) instead of counting runs. `Tally.add` is the one place that knows a run's
contribution: storing adds it, an update takes the old state's out first, prune and reprocess
take it out or put it back the same way.
"""

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime

from runs import sql
from runs.models import FailureDay, FailureGroup, FailureJob, Job, JobRun, Project, Run, RunTally


@dataclass
class Tally:
    """A batch's changes to every counter, added up so each counter row is written once."""

    projects: dict[int, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))
    jobs: dict[int, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))
    job_runs: dict[int, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0, 0, 0]))
    groups: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    group_samples: dict[int, Run] = field(default_factory=dict)
    buckets: dict[tuple[int, datetime, str], int] = field(default_factory=lambda: defaultdict(int))
    days: dict[tuple[int, date], int] = field(default_factory=lambda: defaultdict(int))
    group_jobs: dict[tuple[int, int], int] = field(default_factory=lambda: defaultdict(int))
    touched: dict[type, dict[int, datetime]] = field(default_factory=lambda: defaultdict(dict))

    def touch(self, project: int, job: int | None, job_run: int | None, at: datetime) -> None:
        """A delivery arrived for these parents, by primary key (their "last received" moves,
        even for repeats)."""
        for model, pk in ((Project, project), (Job, job), (JobRun, job_run)):
            if pk is not None:
                seen = self.touched[model]
                seen[pk] = max(seen.get(pk, at), at)

    def add(self, run: Run, sign: int) -> None:
        failed = 1 if run.status == "failed" else 0
        self.projects[run.project_id][0] += sign
        self.projects[run.project_id][1] += sign * failed
        if run.job_id:
            self.jobs[run.job_id][0] += sign
            self.jobs[run.job_id][1] += sign * failed
        if run.job_run_id:
            column = {"completed": 1, "failed": 2}.get(run.status, 3)
            self.job_runs[run.job_run_id][0] += sign
            self.job_runs[run.job_run_id][column] += sign
        hour = run.first_received_at.replace(minute=0, second=0, microsecond=0)
        self.buckets[(run.project_id, hour, run.status)] += sign
        if run.failure_group_id:
            self.groups[run.failure_group_id] += sign
            self.days[(run.failure_group_id, run.first_received_at.date())] += sign
            if run.job_id:
                self.group_jobs[(run.failure_group_id, run.job_id)] += sign
            if sign > 0:
                self.group_samples[run.failure_group_id] = run

    def write(self) -> None:
        """One statement per counter table, and on PostgreSQL one for them all
        (sql.execute_together)."""
        touched = self.touched
        statements = [
            *_add_to_rows(Project, ("run_count", "failed_count"), self.projects, touched[Project]),
            *_add_to_rows(Job, ("run_count", "failed_count"), self.jobs, touched[Job]),
            *_add_to_rows(JobRun, ("total", "completed", "failed", "other"), self.job_runs, touched[JobRun]),
        ]
        if self.groups:
            rows = []
            for pk in sorted(self.groups):
                sample = self.group_samples.get(pk)
                rows.append((
                    pk, self.groups[pk], sample.pk if sample else None,
                    sql.moment(sample.last_received_at) if sample else None,
                ))  # fmt: skip
            statements += sql.update_rows(
                FailureGroup, ("id",), ("count", "sample_run_id", "last_seen"),
                "count = t.count + d.count, sample_run_id = COALESCE(d.sample_run_id, t.sample_run_id),"
                " last_seen = COALESCE(d.last_seen, t.last_seen)",
                rows,
            )  # fmt: skip
        statements += _add_counts(RunTally, ("project_id", "hour", "status"), self.buckets)
        statements += _add_counts(FailureDay, ("group_id", "day"), self.days)
        statements += _add_counts(FailureJob, ("group_id", "job_id"), self.group_jobs)
        sql.execute_together(statements)


def _add_to_rows(model, columns: tuple[str, ...], deltas: dict, touched: dict[int, datetime]) -> list[sql.Statement]:
    """Add per-row deltas to counter columns, and move last_received_at where a delivery came."""
    pks = sorted(set(deltas) | set(touched))
    zero = (0,) * len(columns)
    sets = ", ".join(f"{column} = t.{column} + d.{column}" for column in columns)
    return sql.update_rows(
        model, ("id",), (*columns, "last_received_at"),
        f"{sets}, last_received_at = COALESCE(d.last_received_at, t.last_received_at)",
        [(pk, *deltas.get(pk, zero), sql.moment(touched.get(pk))) for pk in pks],
    )  # fmt: skip


def _add_counts(model, key_columns: tuple[str, ...], counts: dict[tuple, int]) -> list[sql.Statement]:
    """Add to count rows keyed by key_columns. Increments are one upsert on the unique constraint
    over key_columns: atomic on both databases, so a row prune has just deleted is simply made
    again. Decrements only ever meet rows that exist (the run was counted there)."""
    # Keys as the database stores them, merged, so one statement never names a row twice.
    merged: dict[tuple, int] = defaultdict(int)
    for key, n in counts.items():
        merged[tuple(sql.db_value(v) for v in key)] += n
    up = [(*key, n) for key, n in sorted(merged.items()) if n > 0]
    down = [(*key, n) for key, n in sorted(merged.items()) if n < 0]
    return [
        *sql.add_to_counts(model, key_columns, up),
        *sql.update_rows(model, key_columns, ("count",), "count = t.count + d.count", down),
    ]
