"""What sinkdash stores: projects, jobs and job runs as Intuned names them, one Run per runId, every
delivery's raw bytes, failure groups and the quarantine of refused bodies.

Counters that pages show live on the parent rows and move in the same transaction as the Run
(runs.ingest), so no page ever counts the runs table.

A run's parameters are kept as JSON *text*, not a JSONField: PostgreSQL's jsonb refuses "\\u0000"
inside strings and SQLite's JSON functions round integers beyond 64 bits, while text keeps every
legal JSON value exactly on both databases, and the run list's free-text search matches it with a
plain LIKE. Its result and the fields neither payload shape names are not kept on the run at all:
they are in the raw body its state came from (the delivery with its content_sha256), read again
when a page shows them (queries.state_of). Kept twice, they were a third of every run's row.
"""

from django.db import models
from django.db.models import Q


class Status(models.TextChoices):
    """The statuses sinkdash knows; anything else a delivery says is stored as it came."""

    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TERMINATED = "terminated"


class Project(models.Model):
    project_id = models.TextField(unique=True, help_text="Intuned's project UUID.")
    name = models.TextField(blank=True)
    workspace_id = models.TextField(blank=True)
    run_count = models.BigIntegerField(default=0)
    failed_count = models.BigIntegerField(default=0)
    first_received_at = models.DateTimeField()
    last_received_at = models.DateTimeField()

    class Meta:
        ordering = ["name", "project_id"]

    def __str__(self) -> str:
        return self.name or self.project_id or "(no project)"


class Job(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="jobs")
    job_id = models.TextField()
    run_count = models.BigIntegerField(default=0)
    failed_count = models.BigIntegerField(default=0)
    first_received_at = models.DateTimeField()
    last_received_at = models.DateTimeField()

    class Meta:
        ordering = ["job_id"]
        constraints = [
            models.UniqueConstraint(fields=["project", "job_id"], name="job_unique_per_project"),
        ]

    def __str__(self) -> str:
        return self.job_id


class JobRun(models.Model):
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="job_runs")
    job_run_id = models.TextField()
    total = models.BigIntegerField(default=0)
    completed = models.BigIntegerField(default=0)
    failed = models.BigIntegerField(default=0)
    other = models.BigIntegerField(default=0)
    first_received_at = models.DateTimeField()
    last_received_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["job", "job_run_id"], name="job_run_unique_per_job"),
        ]
        indexes = [
            # GET /api/job-runs/{id} and the job run page look a job run up by Intuned's id alone.
            models.Index(fields=["job_run_id"], name="job_run_by_intuned_id"),
            # The job page and overview list a job's latest job runs.
            models.Index(fields=["job", "-last_received_at"], name="job_run_latest_per_job"),
        ]

    def __str__(self) -> str:
        return self.job_run_id

    @property
    def success_rate(self) -> float | None:
        return self.completed / self.total if self.total else None


class FailureGroup(models.Model):
    """Failures that share a cause: one project, one API, one error code, one normalised message."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="failure_groups")
    api_name = models.TextField()
    error_code = models.TextField()
    error_category = models.TextField(blank=True)
    fingerprint = models.CharField(max_length=64, help_text="sha256 of the normalised message.")
    message = models.TextField(help_text="The message with URLs, numbers and ids replaced.")
    count = models.BigIntegerField(default=0)
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()
    sample_run = models.ForeignKey(
        "Run", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["project", "api_name", "error_code", "fingerprint"],
                name="failure_group_unique_cause",
            ),
        ]
        indexes = [
            # /failures/ and GET /api/failures: most recently seen first.
            models.Index(fields=["-last_seen", "-id"], name="failure_group_recent"),
            # Storing finds a batch's groups by their messages' fingerprints, in the round trip
            # that also finds the parents, so before it knows the projects' keys
            # (ingest._failure_groups_query). Through failure_group_unique_cause, which starts
            # with the project, each batch with a failure read every group of its project: 5 ms
            # a batch at 50,000 groups. The cause's other columns follow, so that SQLite, which
            # has no statistics to choose by, prefers this index as the one that covers the query.
            models.Index(
                fields=["fingerprint", "project", "api_name", "error_code"], name="failure_group_by_fingerprint"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.error_code}: {self.message[:80]}"


class FailureDay(models.Model):
    """Failures per group and day: the sparkline on /failures/ reads a group's last few rows."""

    group = models.ForeignKey(FailureGroup, on_delete=models.CASCADE, related_name="days")
    day = models.DateField()
    count = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["group", "day"], name="failure_day_unique"),
        ]


class FailureJob(models.Model):
    """Failures per group and job: the jobs a cause affects, on /failures/, without reading runs."""

    group = models.ForeignKey(FailureGroup, on_delete=models.CASCADE, related_name="jobs")
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="+")
    count = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["group", "job"], name="failure_job_unique"),
        ]


class Run(models.Model):
    run_id = models.TextField(unique=True)
    # No single-column indexes on the foreign keys: run_by_project, run_by_job, run_by_job_run and
    # run_by_failure_group start with the same column, so they serve the joins and cascades too,
    # and each index less is one B-tree less to write per stored run.
    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="runs", db_index=False
    )
    job = models.ForeignKey(
        Job, null=True, blank=True, on_delete=models.CASCADE, related_name="runs", db_index=False
    )
    job_run = models.ForeignKey(
        JobRun, null=True, blank=True, on_delete=models.CASCADE, related_name="runs", db_index=False
    )
    api_name = models.TextField(blank=True)
    status = models.TextField()
    status_code = models.BigIntegerField(null=True, blank=True)
    error_code = models.TextField(blank=True)
    error_message = models.TextField(blank=True)
    error_category = models.TextField(blank=True)
    error_doc_url = models.TextField(blank=True)
    parameters_json = models.TextField(default="null")
    parameters_sha256 = models.CharField(
        max_length=64, blank=True, help_text="sha256 of the parameters with sorted keys."
    )
    parameters_key = models.BigIntegerField(
        null=True, blank=True, help_text="payload.parameters_key(api_name, parameters_sha256)."
    )
    auth_session_id = models.TextField(blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    trace_url = models.TextField(blank=True)
    log_url = models.TextField(blank=True)
    failure_group = models.ForeignKey(
        FailureGroup, null=True, blank=True, on_delete=models.SET_NULL, related_name="runs",
        db_index=False,
    )  # fmt: skip
    content_sha256 = models.CharField(max_length=64, help_text="The body the run's state came from.")
    delivery_count = models.BigIntegerField(default=0)
    first_received_at = models.DateTimeField()
    last_received_at = models.DateTimeField()

    class Meta:
        indexes = [
            # The run list pages newest first by id (keyset); each filter has its own (column, id).
            models.Index(fields=["status", "-id"], name="run_by_status"),
            models.Index(fields=["project", "-id"], name="run_by_project"),
            models.Index(fields=["job", "-id"], name="run_by_job"),
            models.Index(fields=["job_run", "-id"], name="run_by_job_run"),
            models.Index(fields=["job_run", "status", "-id"], name="run_by_job_run_status"),
            models.Index(fields=["api_name", "-id"], name="run_by_api"),
            # Error codes and failure groups belong to failures: the other runs (most of them) are
            # left out of their indexes, and every query on them names a code or a group.
            models.Index(
                fields=["error_code", "-id"], condition=~Q(error_code=""), name="run_by_error_code"
            ),
            models.Index(
                fields=["failure_group", "-id"],
                condition=Q(failure_group__isnull=False),
                name="run_by_failure_group",
            ),
            # The run page's "runs with the same parameters in other job runs", and the run list's
            # parameters filter: by the short key of (API, digest), see payload.parameters_key.
            models.Index(fields=["project", "parameters_key", "-id"], name="run_same_parameters"),
            # since/until become id bounds through this index (runs.queries.id_bounds).
            models.Index(fields=["first_received_at"], name="run_by_first_received"),
            # Prune walks the oldest runs first.
            models.Index(fields=["last_received_at"], name="run_by_last_received"),
        ]

    def __str__(self) -> str:
        return self.run_id


class Delivery(models.Model):
    """One POST (or imported record) that was accepted, with the exact bytes received."""

    class Outcome(models.TextChoices):
        CREATED = "created", "created the run"
        UPDATED = "updated", "updated the run"
        DUPLICATE = "duplicate", "repeated a body already received"
        STALE = "stale", "older than the run's state, kept but not applied"

    # delivery_by_run_sha starts with run_id: it serves a run's deliveries and the cascade too.
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="deliveries", db_index=False)
    received_at = models.DateTimeField()
    raw = models.BinaryField()
    sha256 = models.CharField(max_length=64)
    size = models.BigIntegerField()
    headers_json = models.TextField(default="{}", help_text="Request headers, credentials removed.")
    source = models.TextField(default="webhook", help_text="webhook, or the file it was imported from.")
    outcome = models.CharField(max_length=16, choices=Outcome)

    class Meta:
        verbose_name_plural = "deliveries"
        indexes = [
            # Duplicate detection: has this run already received these exact bytes?
            models.Index(fields=["run", "sha256"], name="delivery_by_run_sha"),
        ]

    def __str__(self) -> str:
        return f"delivery {self.pk} of {self.run_id}"


class RejectedDelivery(models.Model):
    """The quarantine: bodies that were refused, kept with the reason so a user can see why."""

    received_at = models.DateTimeField()
    raw = models.BinaryField()
    sha256 = models.CharField(max_length=64)
    size = models.BigIntegerField()
    headers_json = models.TextField(default="{}")
    source = models.TextField(default="webhook")
    http_status = models.PositiveSmallIntegerField()
    reason = models.TextField()
    field = models.TextField(blank=True, help_text="The payload field at fault, when one is.")
    reprocessed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "rejected deliveries"
        indexes = [
            # /rejected/ lists newest first; the bound on the quarantine drops oldest first. With
            # size in it, the bound adds up sizes and picks what to drop from the index alone: in
            # SQLite a column stored after the raw body is read by walking the body's overflow
            # pages, and summing sizes over 200 MB of 1.9 MB bodies took 51 ms, in the writer,
            # for every refused delivery (under 1 ms from the index).
            models.Index(fields=["-received_at", "-id", "size"], name="rejected_recent"),
        ]

    def __str__(self) -> str:
        return f"rejected {self.pk}: {self.reason[:60]}"


class RunTally(models.Model):
    """Runs per project, hour (of first receipt) and status: the summary and the overview chart
    add up these few rows instead of counting runs."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="tallies")
    hour = models.DateTimeField()
    status = models.TextField()
    count = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["project", "hour", "status"], name="run_tally_unique_bucket"
            ),
        ]
        indexes = [
            # The overview chart reads the latest hours across projects.
            models.Index(fields=["hour"], name="run_tally_by_hour"),
        ]


class SignInLink(models.Model):
    """A one-time link, printed by `make run` while no user exists, that creates the first account."""

    token_sha256 = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    used_at = models.DateTimeField(null=True, blank=True)

