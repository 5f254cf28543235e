from django.urls import path

from api import batch_views, openapi, views
from api.admin.site import site as admin_site
from ttsplatform.health import health, metrics_view

urlpatterns = [
    path("speakers", views.speakers, name="speakers"),
    path("remove", views.remove, name="remove"),
    path("clone", views.clone, name="clone"),
    path("cache/save", views.cache_save, name="cache-save"),
    path("cache/load", views.cache_load, name="cache-load"),
    path("usage", views.usage_report, name="usage"),
    path("voices/<path:prompt_id>", views.voice_detail, name="voice-detail"),
    path("batches", batch_views.batches, name="batches"),
    path("batches/<str:batch_id>", batch_views.batch, name="batch"),
    path("batches/<str:batch_id>/cancel", batch_views.cancel, name="batch-cancel"),
    path("batches/<str:batch_id>/items/<int:index>", batch_views.item, name="batch-item"),
    path("batches/<str:batch_id>/archive", batch_views.archive, name="batch-archive"),
    path("health", health, name="health"),
    path("metrics", metrics_view, name="metrics"),
    path("openapi.json", openapi.schema_view, name="openapi"),
    path("admin/", admin_site.urls),
]

handler400 = "api.http.bad_request"
handler404 = "api.http.not_found"
handler500 = "api.http.server_error"
