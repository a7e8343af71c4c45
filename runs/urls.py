from django.urls import path

from runs import signin, views

urlpatterns = [
    path("", views.overview, name="overview"),
    path("healthz", views.healthz, name="healthz"),
    path("accounts/first/<str:token>/", signin.first_sign_in, name="first-sign-in"),
]
