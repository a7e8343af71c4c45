from django.contrib import admin

from runs.models import Delivery, FailureGroup, Job, JobRun, Project, RejectedDelivery, Run


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["name", "project_id", "workspace_id", "run_count", "failed_count", "last_received_at"]
    search_fields = ["name", "project_id"]


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ["job_id", "project", "run_count", "failed_count", "last_received_at"]
    list_select_related = ["project"]
    raw_id_fields = ["project"]


@admin.register(JobRun)
class JobRunAdmin(admin.ModelAdmin):
    list_display = ["job_run_id", "job", "total", "completed", "failed", "other", "last_received_at"]
    list_select_related = ["job"]
    raw_id_fields = ["job"]


@admin.register(Run)
class RunAdmin(admin.ModelAdmin):
    list_display = ["run_id", "status", "api_name", "error_code", "first_received_at"]
    list_filter = ["status"]
    search_fields = ["run_id"]
    raw_id_fields = ["project", "job", "job_run", "failure_group"]
    show_full_result_count = False  # no COUNT over a large table


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = ["id", "run", "outcome", "size", "received_at", "source"]
    raw_id_fields = ["run"]
    exclude = ["raw"]
    show_full_result_count = False


@admin.register(FailureGroup)
class FailureGroupAdmin(admin.ModelAdmin):
    list_display = ["error_code", "api_name", "message", "count", "first_seen", "last_seen"]
    raw_id_fields = ["project", "sample_run"]


@admin.register(RejectedDelivery)
class RejectedDeliveryAdmin(admin.ModelAdmin):
    list_display = ["id", "http_status", "reason", "size", "received_at", "source"]
    exclude = ["raw"]
