"""Every page and API read the pages benchmark times, as (label, path) built from one database's
fixtures (bench/inspect_db.py fixtures): the same kinds of rows are picked at 2k and at 1M runs
(the busiest project and job, the newest job run, the oldest run...), so each route asks the same
question of a small and a large database."""

from urllib.parse import quote, urlencode


def routes(fx: dict) -> list[tuple[str, str]]:
    def runs(**query) -> str:
        return "/runs/?" + urlencode(query, doseq=True)

    def api(**query) -> str:
        return "/api/runs?" + urlencode(query, doseq=True)

    return [
        ("overview /", "/"),
        ("overview live poll, nothing new", f"/?after={fx['latest_delivery_id']}"),
        ("/runs/ unfiltered", "/runs/"),
        ("/runs/ status=failed", runs(status="failed")),
        ("/runs/ status=failed,cancelled", runs(status=["failed", "cancelled"])),
        ("/runs/ status=cancelled (rare)", runs(status="cancelled")),
        ("/runs/ project", runs(project=fx["project_id"])),
        ("/runs/ project+job", runs(project=fx["project_id"], job=fx["job_id"])),
        ("/runs/ job_run", runs(job_run=fx["job_run_id"])),
        ("/runs/ job_run+status=failed", runs(job_run=fx["job_run_id"], status="failed")),
        ("/runs/ api", runs(api=fx["api"])),
        ("/runs/ error_code", runs(error_code=fx["error_code"])),
        ("/runs/ failure_group", runs(failure_group=fx["failure_group"])),
        ("/runs/ project+status=failed", runs(project=fx["project_id"], status="failed")),
        ("/runs/ q=common text", runs(q="TimeoutError")),
        ("/runs/ q=oldest run id (one match)", runs(q=fx["oldest_run_id"])),
        ("/runs/ since/until (whole range)", runs(since=fx["since_all"], until=fx["until_all"])),
        ("/runs/ since/until (a second mid-data)", runs(since=fx["since_mid"], until=fx["until_mid"])),
        ("/runs/ deep cursor (oldest page)", runs(cursor=fx["deep_cursor"])),
        ("/runs/ status=failed deep cursor", runs(status="failed", cursor=fx["deep_failed_cursor"])),
        ("/runs/ live poll, nothing new", runs(after=fx["newest_id"], delivered=fx["latest_delivery_id"])),
        ("run detail (list API)", f"/runs/{quote(fx['run_list_api'])}/"),
        ("run detail (unique parameters)", f"/runs/{quote(fx['run_unique_params'])}/"),
        ("/failures/", "/failures/"),
        ("/failures/ project", "/failures/?" + urlencode({"project": fx["project_id"]})),
        ("project page", f"/projects/{fx['project_pk']}/"),
        ("job page", f"/jobs/{fx['job_pk']}/"),
        ("job run page", f"/job-runs/{fx['job_run_pk']}/"),
        ("/api/runs", "/api/runs"),
        ("/api/runs status=failed", api(status="failed")),
        ("/api/runs job_run", api(job_run=fx["job_run_id"])),
        ("/api/runs deep cursor", api(cursor=fx["deep_cursor"])),
        ("/api/runs/{run_id}", f"/api/runs/{quote(fx['run_list_api'])}"),
        ("/api/summary", "/api/summary"),
        ("/api/failures", "/api/failures"),
        ("/api/projects", "/api/projects"),
        ("/api/job-runs/{id}", f"/api/job-runs/{quote(fx['job_run_id'])}"),
        ("export csv job_run+status=failed", "/api/runs/export?" + urlencode(
            {"format": "csv", "job_run": fx["job_run_id"], "status": "failed"})),
        ("export csv one page (limit ignored: job_run)", "/api/runs/export?" + urlencode(
            {"format": "csv", "job_run": fx["job_run_id"]})),
    ]  # fmt: skip
