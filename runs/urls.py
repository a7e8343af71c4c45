from django.urls import path

from runs import converters, signin, views  # noqa: F401  (converters: "run_id")

urlpatterns = [
    path("", views.overview, name="overview"),
    path("runs/", views.run_list, name="run-list"),
    path("runs/<run_id:run_id>/result.json", views.run_result, name="run-result"),
    path("runs/<run_id:run_id>/", views.run_detail, name="run"),
    path("deliveries/<int:delivery_id>/", views.delivery_body, name="delivery"),
    path("failures/", views.failures, name="failures"),
    path("projects/<int:pk>/", views.project_detail, name="project"),
    path("jobs/<int:pk>/", views.job_detail, name="job"),
    path("job-runs/<int:pk>/", views.job_run_detail, name="job-run"),
    path("rejected/", views.rejected, name="rejected"),
    path("rejected/<int:rejected_id>/", views.rejected_body, name="rejected-body"),
    path("connect/", views.connect, name="connect"),
    path("connect/token", views.connect_token, name="connect-token"),
    path("favicon.ico", views.favicon),
    path("healthz", views.healthz, name="healthz"),
    path("accounts/first/<str:token>/", signin.first_sign_in, name="first-sign-in"),
]
