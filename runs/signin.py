"""First sign-in: while no account exists, `make run` prints a one-time link (as Jupyter does) that
lets whoever is at the console create the first account. The wall itself never opens: the link
works once, only while there are no users, and only for a day."""

import hashlib
import secrets
from datetime import timedelta

from django.contrib.auth import get_user_model, login
from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.forms import UserCreationForm
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from runs.models import SignInLink

LINK_LIFETIME = timedelta(days=1)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_first_sign_in_path() -> str | None:
    """A fresh one-time path, or None when an account already exists. Older links stop working."""
    if get_user_model().objects.exists():
        return None
    token = secrets.token_urlsafe(24)
    with transaction.atomic():
        SignInLink.objects.filter(used_at__isnull=True).delete()
        SignInLink.objects.create(token_sha256=_digest(token))
    return reverse("first-sign-in", args=[token])


def _valid_link(token: str) -> SignInLink | None:
    if get_user_model().objects.exists():
        return None
    return SignInLink.objects.filter(
        token_sha256=_digest(token),
        used_at__isnull=True,
        created_at__gte=timezone.now() - LINK_LIFETIME,
    ).first()


@login_not_required
@require_http_methods(["GET", "POST"])
def first_sign_in(request: HttpRequest, token: str) -> HttpResponse:
    link = _valid_link(token)
    if link is None:
        return render(request, "registration/first_sign_in_used.html", status=404)
    form = UserCreationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        with transaction.atomic():
            if _valid_link(token) is None:  # another tab got there first
                return render(request, "registration/first_sign_in_used.html", status=404)
            user = form.save(commit=False)
            user.is_staff = user.is_superuser = True
            user.save()
            link.used_at = timezone.now()
            link.save(update_fields=["used_at"])
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        return redirect("overview")
    return render(request, "registration/first_sign_in.html", {"form": form})
