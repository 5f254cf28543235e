"""Batch jobs in the operators' admin panel: progress, each item's state and error, a player
for finished items, and cancel / delete (which also deletes the job's files)."""
from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html

from api.admin.site import StyledModelAdmin, short_datetime, site
from api.admin.voices import admin_actor
from batches import services
from batches.models import Batch, BatchItem
from core.errors import ApiError
from tenants import audit
from tenants.models import AuditEvent


class BatchItemInline(admin.TabularInline):
    model = BatchItem
    fields = ("index", "name", "prompt_id", "state", "seconds", "attempts", "error", "player")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request: HttpRequest, obj: Batch | None = None) -> bool:
        return False

    @admin.display(description="listen")
    def player(self, item: BatchItem) -> str:
        if item.state != BatchItem.State.SUCCEEDED:
            return "–"
        url = reverse("admin:batches_batch_item_audio", args=[item.batch_id, item.index], current_app=site.name)
        return format_html('<audio controls preload="none" src="{}"></audio>', url)


@admin.register(Batch, site=site)
class BatchAdmin(StyledModelAdmin):
    list_display = ("batch_id", "tenant", "state", "progress", "items_total", "characters", "created")
    list_filter = ("state", "tenant")
    search_fields = ("batch_id", "tenant__slug")
    readonly_fields = ("tenant", "batch_id", "state", "prompt_id", "audio_format", "sample_rate", "instruct_text",
                       "characters", "ttl_hours", "actor", "created_at", "started_at", "finished_at", "expires_at")
    fields = readonly_fields
    inlines = [BatchItemInline]
    actions = ["cancel_jobs", "delete_jobs"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Batch]:
        return services.annotated_batches().select_related("tenant")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # jobs come from PUT /batches/<id>

    def get_actions(self, request: HttpRequest) -> dict:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # delete_jobs also deletes the files
        return actions

    @admin.display(description="progress")
    def progress(self, batch: Batch) -> str:
        job = services.describe(batch)
        counts = job["counts"]
        return f"{job['progress']:.0%} ({counts['succeeded']} ok, {counts['failed']} failed)"

    @admin.display(description="items")
    def items_total(self, batch: Batch) -> int:
        return batch.n_total

    @admin.display(description="created", ordering="created_at")
    def created(self, batch: Batch) -> str:
        return short_datetime(batch.created_at)

    @admin.action(description="Cancel the selected jobs", permissions=["change"])
    def cancel_jobs(self, request: HttpRequest, queryset: QuerySet[Batch]) -> None:
        cancelled = 0
        for batch in queryset.select_related("tenant"):
            if services.cancel(batch.tenant, batch.batch_id):
                audit.record(batch.tenant_id, admin_actor(request), AuditEvent.Action.BATCH_CANCELLED,
                             detail=f"batch {batch.batch_id}")
                cancelled += 1
        self.message_user(request, f"{cancelled} job(s) cancelled", messages.SUCCESS)

    @admin.action(description="Delete the selected jobs and their files", permissions=["delete"])
    def delete_jobs(self, request: HttpRequest, queryset: QuerySet[Batch]) -> None:
        deleted = 0
        for batch in queryset.select_related("tenant"):
            files = services.delete(batch.tenant, batch.batch_id)
            audit.record(batch.tenant_id, admin_actor(request), AuditEvent.Action.BATCH_DELETED,
                         detail=f"batch {batch.batch_id}: {files} files deleted")
            deleted += 1
        self.message_user(request, f"{deleted} job(s) deleted", messages.SUCCESS)

    def delete_model(self, request: HttpRequest, obj: Batch) -> None:
        services.delete(obj.tenant, obj.batch_id)
        audit.record(obj.tenant_id, admin_actor(request), AuditEvent.Action.BATCH_DELETED,
                     detail=f"batch {obj.batch_id}")

    def get_urls(self) -> list:
        audio = path("<int:pk>/items/<int:index>/audio", self.admin_site.admin_view(self.item_audio),
                     name="batches_batch_item_audio")
        return [audio, *super().get_urls()]

    def item_audio(self, request: HttpRequest, pk: int, index: int) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        batch = get_object_or_404(Batch.objects.select_related("tenant"), pk=pk)
        try:
            data, mime, _name = services.item_file(batch.tenant, batch.batch_id, index)
        except ApiError as exc:
            return HttpResponse(exc.message, status=exc.status, content_type="text/plain; charset=utf-8")
        return HttpResponse(data, content_type=mime)
