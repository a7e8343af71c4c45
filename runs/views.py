"""The dashboard pages (server-rendered; htmx swaps the {% partialdef %} parts)."""

from django.contrib.auth.decorators import login_not_required
from django.db import DatabaseError, connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache

from runs import queries


@login_not_required
@never_cache
def healthz(request: HttpRequest) -> HttpResponse:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError:
        return JsonResponse({"status": "database unavailable"}, status=503)
    return JsonResponse({"status": "ok"})


def overview(request: HttpRequest) -> HttpResponse:
    return render(request, "runs/overview.html", {"projects": queries.projects_with_jobs()})
