"""Every counter row compared with a count of the tables it summarises (for tests that change
runs in bulk: import, prune, reprocess)."""

from collections import Counter

from runs.models import FailureDay, FailureGroup, FailureJob, Job, JobRun, Project, Run, RunTally


def counter_mismatches() -> list[str]:
    """What differs between the stored counters and a recount; empty when all agree."""
    runs = list(Run.objects.values("project_id", "job_id", "job_run_id", "status", "failure_group_id", "first_received_at"))
    wrong: list[str] = []

    def compare(name: str, stored: Counter, counted: Counter) -> None:
        for key in set(stored) | set(counted):
            if stored[key] != counted[key]:
                wrong.append(f"{name} {key}: stored {stored[key]}, counted {counted[key]}")

    compare("project runs", Counter({p.pk: p.run_count for p in Project.objects.all()}), Counter(r["project_id"] for r in runs))
    compare("project failed", Counter({p.pk: p.failed_count for p in Project.objects.all()}),
            Counter(r["project_id"] for r in runs if r["status"] == "failed"))
    compare("job runs", Counter({j.pk: j.run_count for j in Job.objects.all()}), Counter(r["job_id"] for r in runs if r["job_id"]))
    compare("job failed", Counter({j.pk: j.failed_count for j in Job.objects.all()}),
            Counter(r["job_id"] for r in runs if r["job_id"] and r["status"] == "failed"))
    stored_jr, counted_jr = Counter(), Counter()
    for jr in JobRun.objects.all():
        for column in ("total", "completed", "failed", "other"):
            stored_jr[(jr.pk, column)] = getattr(jr, column)
    for r in runs:
        if r["job_run_id"]:
            counted_jr[(r["job_run_id"], "total")] += 1
            column = r["status"] if r["status"] in ("completed", "failed") else "other"
            counted_jr[(r["job_run_id"], column)] += 1
    compare("job run", stored_jr, counted_jr)
    compare("failure group", Counter({g.pk: g.count for g in FailureGroup.objects.all()}),
            Counter(r["failure_group_id"] for r in runs if r["failure_group_id"]))
    compare("failure day", Counter({(d.group_id, d.day): d.count for d in FailureDay.objects.all()}),
            Counter((r["failure_group_id"], r["first_received_at"].date()) for r in runs if r["failure_group_id"]))
    compare("failure job", Counter({(j.group_id, j.job_id): j.count for j in FailureJob.objects.filter(count__gt=0)}),
            Counter((r["failure_group_id"], r["job_id"]) for r in runs if r["failure_group_id"] and r["job_id"]))
    compare("tally", Counter({(t.project_id, t.hour, t.status): t.count for t in RunTally.objects.all()}),
            Counter((r["project_id"], r["first_received_at"].replace(minute=0, second=0, microsecond=0), r["status"]) for r in runs))
    return sorted(wrong)
