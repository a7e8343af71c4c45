"""Every dashboard page, walked from the URL resolver with ids of rows that exist, so a page added
later is attacked (XSS, access, token, headers) without anyone remembering to list it here."""

from urllib.parse import quote

from django.urls import URLPattern, URLResolver, get_resolver, reverse

from runs.models import (
    Delivery,
    FailureGroup,
    Job,
    JobRun,
    Project,
    RejectedDelivery,
    Run,
)

# Routes that are not pages a signed-in user browses: POST-only, machine endpoints, the sign-in.
NOT_PAGES = {"connect-token", "healthz", "first-sign-in", "login", "logout"}
MANY = 50  # rows of each kind visited per route


def named_routes() -> dict[str, URLPattern]:
    found: dict[str, URLPattern] = {}

    def walk(patterns, namespace: str = "") -> None:
        for p in patterns:
            if isinstance(p, URLResolver):
                if p.namespace in ("admin", "api") or str(p.pattern).startswith("admin/"):
                    continue  # Django's admin and the JSON API are attacked elsewhere
                walk(p.url_patterns, namespace)
            elif isinstance(p, URLPattern) and p.name:
                found[p.name] = p

    walk(get_resolver().url_patterns)
    return found


def _samples(name: str) -> list[list]:
    by_name = {
        "run": lambda: [[r] for r in Run.objects.values_list("run_id", flat=True)[:MANY]],
        "run-result": lambda: [[r] for r in Run.objects.values_list("run_id", flat=True)[:MANY]],
        "delivery": lambda: [[pk] for pk in Delivery.objects.values_list("pk", flat=True)[:MANY]],
        "project": lambda: [[pk] for pk in Project.objects.values_list("pk", flat=True)[:MANY]],
        "job": lambda: [[pk] for pk in Job.objects.values_list("pk", flat=True)[:MANY]],
        "job-run": lambda: [[pk] for pk in JobRun.objects.values_list("pk", flat=True)[:MANY]],
        "rejected-body": lambda: [[pk] for pk in RejectedDelivery.objects.values_list("pk", flat=True)[:MANY]],
    }
    if name not in by_name:
        raise AssertionError(
            f"route {name!r} takes arguments: give it sample ids in tests/reliability/pages.py"
        )
    return by_name[name]()


def page_paths(*, query_values: list[str] = ()) -> list[str]:
    """One path per page and sample row, plus the list pages filtered by each query value."""
    paths: list[str] = []
    for name, pattern in sorted(named_routes().items()):
        if name in NOT_PAGES or not name:
            continue
        if pattern.pattern.converters:
            paths += [reverse(name, args=args) for args in _samples(name)]
        else:
            paths.append(reverse(name))
    groups = list(FailureGroup.objects.values_list("pk", flat=True)[:MANY])
    paths += [f"/runs/?failure_group={pk}" for pk in groups]
    paths += ["/runs/?status=failed", "/runs/?status=completed,terminated,unknown"]
    for value in query_values:
        q = quote(value, safe="")
        paths += [f"/runs/?q={q}", f"/runs/?api={q}&error_code={q}", f"/runs/?project={q}&job={q}",
                  f"/runs/?since={q}", f"/failures/?project={q}"]  # fmt: skip
    return paths
