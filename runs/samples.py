"""Realistic sink bodies for demos, `simulate`, benchmarks and load tests.

A `Fleet` is a few projects with jobs and APIs; each call to `next_body()` is one finished Run of
one of them, in either payload shape, failing at the given rate with the error codes and the kind
of messages Intuned really sends (run-specific URLs, selectors and timings inside the text, so
failure grouping has something to normalise). Seeded, so a benchmark gets the same bodies twice.
"""

import json
import random
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

SHOPS = ["shop.example", "store.example", "market.example", "outlet.example"]
SELECTORS = [".price", "#add-to-cart", "[data-testid='title']", "div.product-card >> nth=0", "button:has-text('Next')"]
CATEGORIES = ["shoes", "jackets", "bags", "watches", "hats"]


def _url(rng: random.Random) -> str:
    return f"https://{rng.choice(SHOPS)}/p/{rng.randint(1, 99999)}"


# (code, weight, message maker): the codes and categories of shared/intuned/README.md.
ERRORS: list[tuple[str, int, Callable[[random.Random], str]]] = [
    ("script-execution-exception", 30, lambda r: (
        f"TimeoutError: locator('{r.choice(SELECTORS)}') not visible after {r.choice([5000, 10000, 30000])}ms "
        f"on {_url(r)}")),
    ("script-execution-exception", 15, lambda r: (
        f"Error: page.goto: net::ERR_NAME_NOT_RESOLVED at {_url(r)}")),
    ("script-execution-exception", 10, lambda r: (
        f"TypeError: Cannot read properties of null (reading 'textContent') at extract (api/{r.choice(['list', 'details'])}.ts:{r.randint(10, 200)}:{r.randint(1, 40)})")),
    ("script-timeout", 15, lambda r: f"Execution Timed Out after {r.choice([300, 600, 900])}s"),
    ("script-process-crashed", 4, lambda r: (
        f"Browser process crashed (possibly out of memory) after {r.randint(20, 600)}s")),
    ("script-no-valid-output-received", 4, lambda r: "The API returned undefined; return a JSON-serialisable value"),
    ("result-too-big-error", 3, lambda r: (
        f"Result is {r.uniform(2.01, 9.5):.1f} MB, larger than the 2 MB limit")),
    ("auth-session-not-ready", 6, lambda r: (
        f"Auth session {uuid.UUID(int=r.getrandbits(128))} is not ready: it is still being created")),
    ("auth-check-failed", 4, lambda r: (
        f"Auth check failed: login form still shown on https://{r.choice(SHOPS)}/account")),
    ("api-attempts-failed", 5, lambda r: f"API failed after {r.randint(2, 5)} attempts"),
    ("insufficient-credits", 1, lambda r: "Workspace has insufficient credits to start the run"),
    ("internal-server-error", 3, lambda r: (
        f"Internal server error (correlation id {uuid.UUID(int=r.getrandbits(128))})")),
]  # fmt: skip
_CATEGORY = {
    "script-execution-exception": "execution", "script-timeout": "execution",
    "script-process-crashed": "infrastructure", "script-no-valid-output-received": "execution",
    "result-too-big-error": "execution", "auth-session-not-ready": "auth",
    "auth-check-failed": "auth", "api-attempts-failed": "execution",
    "insufficient-credits": "billing", "internal-server-error": "infrastructure",
}  # fmt: skip
REASONS = [
    {"type": "terminated", "code": "job-run-terminated", "message": "Job run was terminated by a user"},
    {"type": "terminated", "code": "job-run-terminated", "message": "Max runs exceeded (1000) for this job run"},
    {"type": "cancelled", "code": "auth-session-invalid-mid-job", "message": "Auth session became invalid during the job run"},
    {"type": "cancelled", "code": "another-job-run-active", "message": "Another job run of this job is active"},
]  # fmt: skip


@dataclass
class _Job:
    project_id: str
    project_name: str
    job_id: str
    apis: list[str]
    job_run_id: str = ""
    runs_left: int = 0
    newer_shape: bool = False


@dataclass
class Fleet:
    """A few projects, jobs and job runs producing bodies. Rates are fractions in [0, 1]."""

    seed: int | None = None
    failure_rate: float = 0.15
    cancel_rate: float = 0.02
    standalone_rate: float = 0.08  # runs started through the Run API: no job, no job run
    newer_shape_rate: float = 0.5  # per job run: which payload shape its runs arrive in
    workspace_id: str = ""
    rng: random.Random = field(init=False)
    jobs: list[_Job] = field(init=False)

    def __post_init__(self):
        self.rng = random.Random(self.seed)
        self.workspace_id = self.workspace_id or self._uuid()
        plans = [
            ("shop-scraper", ["nightly-catalog", "hourly-prices"], ["list-products", "product-details"]),
            ("jobs-board", ["daily-postings"], ["search-postings", "posting-details"]),
            ("crm-sync", ["sync-contacts"], ["login-check", "export-contacts"]),
        ]
        self.jobs = []
        for name, job_ids, apis in plans:
            project_id = self._uuid()
            self.jobs.extend(_Job(project_id, name, job_id, apis) for job_id in job_ids)

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def next_body(self, now: datetime | None = None) -> dict:
        """One finished Run, as the dict Intuned would serialise."""
        rng = self.rng
        now = now or datetime.now(UTC)
        job = rng.choice(self.jobs)
        standalone = rng.random() < self.standalone_rate
        if not standalone and job.runs_left <= 0:
            job.job_run_id = self._uuid()
            job.runs_left = rng.randint(20, 300)
            job.newer_shape = rng.random() < self.newer_shape_rate
        newer = job.newer_shape if not standalone else rng.random() < self.newer_shape_rate
        api = rng.choice(job.apis)
        roll = rng.random()
        outcome = "failed" if roll < self.failure_rate else "cancelled" if roll < self.failure_rate + self.cancel_rate else "completed"
        if outcome == "cancelled" and not newer:
            outcome = "failed"  # the documented shape has no way to say cancelled
        started = now - timedelta(seconds=rng.uniform(2, 600))
        info = self._api_info(api, outcome, newer, started, now)
        body = {"apiInfo": info, "workspaceId": self.workspace_id, "project": {"id": job.project_id, "name": job.project_name}}
        if rng.random() < 0.3:
            body["authSession"] = {"id": rng.choice(["default", "session-eu", "session-us"])}
        if not standalone:
            body["projectJob"] = {"id": job.job_id}
            body["projectJobRun"] = {"id": job.job_run_id}
            job.runs_left -= 1
        return body

    def next_raw(self, now: datetime | None = None) -> bytes:
        return json.dumps(self.next_body(now), ensure_ascii=False).encode()

    def _api_info(self, api: str, outcome: str, newer: bool, started: datetime, ended: datetime) -> dict:
        rng = self.rng
        run_id = self._uuid()
        parameters = self._parameters(api)
        if outcome == "failed":
            code, make = self._error()
            message = make(rng)
        if not newer:
            if outcome == "completed":
                result = {"status": "completed", "result": self._result(api), "statusCode": 200}
            else:
                result = {"status": "failed", "error": code, "message": message, "statusCode": 500}
            return {"name": api, "parameters": parameters, "result": result, "runId": run_id}
        info = {
            "name": api,
            "parameters": parameters,
            "runId": run_id,
            "result": {"output": self._result(api), "extendedPayloads": self._extended(api)} if outcome == "completed" else None,
            "started_at": started.isoformat().replace("+00:00", "Z"),
            "ended_at": ended.isoformat().replace("+00:00", "Z"),
            "error": None,
            "reason": None,
            "trace_url": f"https://files.intuned.example/runs/{run_id}/trace.zip",
            "log_url": f"https://files.intuned.example/runs/{run_id}/logs.jsonl",
        }  # fmt: skip
        if outcome == "failed":
            info["error"] = {
                "message": message,
                "code": code,
                "category": _CATEGORY.get(code, "execution"),
                "doc_url": "https://docs.intunedhq.com/docs/support/errors",
                "details": {"attempts_count": rng.randint(1, 3)},
            }
        elif outcome == "cancelled":
            info["reason"] = dict(rng.choice(REASONS))
        return info

    def _error(self) -> tuple[str, Callable[[random.Random], str]]:
        code, _, make = self.rng.choices(ERRORS, weights=[w for _, w, _ in ERRORS])[0]
        return code, make

    def _parameters(self, api: str):
        rng = self.rng
        if api.startswith("list") or api.startswith("search"):
            return {"category": rng.choice(CATEGORIES), "page": rng.randint(1, 20)}
        if api == "login-check":
            return []
        return {"url": _url(rng)}

    def _result(self, api: str):
        rng = self.rng
        if api == "login-check":
            return None
        if api.startswith("list") or api.startswith("search") or api.startswith("export"):
            return [self._item() for _ in range(rng.randint(0, 12))]
        return self._item() | {"description": "Lightweight and breathable. " * rng.randint(1, 6)}

    def _item(self) -> dict:
        rng = self.rng
        return {
            "title": rng.choice(["Trail runner", "Rain jacket", "City bag", "Field watch", "Wool hat"]) + f" {rng.randint(1, 99)}",
            "price": round(rng.uniform(5, 400), 2),
            "currency": "EUR",
            "url": _url(rng),
            "in_stock": rng.random() < 0.8,
        }  # fmt: skip

    def _extended(self, api: str) -> list:
        if not api.startswith("list"):
            return []
        return [{"api": "product-details", "parameters": {"url": _url(self.rng)}} for _ in range(self.rng.randint(0, 3))]


def deliveries(fleet: Fleet, *, duplicate_rate: float = 0.03) -> Iterator[tuple[bytes, bool]]:
    """Endless (raw body, is_repeat) pairs: now and then the exact bytes of a recent delivery again,
    as Intuned resends when an answer was lost."""
    recent: deque[bytes] = deque(maxlen=50)
    while True:
        if recent and fleet.rng.random() < duplicate_rate:
            yield fleet.rng.choice(recent), True
            continue
        raw = fleet.next_raw()
        recent.append(raw)
        yield raw, False
