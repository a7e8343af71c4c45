from django.contrib.auth.middleware import LoginRequiredMiddleware


class SignInRequiredMiddleware(LoginRequiredMiddleware):
    """Django's sign-in wall for every page, except the API, which has its own authentication
    (the sink token for /api/sink, a session or API token elsewhere) and must answer 401 in JSON
    rather than redirect a script to a login form."""

    def process_view(self, request, view_func, view_args, view_kwargs):
        if request.path_info.startswith("/api/") and not request.path_info.startswith("/api/docs"):
            return None
        return super().process_view(request, view_func, view_args, view_kwargs)
