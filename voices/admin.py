from django.contrib import admin

from voices.models import Tenant, Voice


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    list_display = ("slug", "name", "created_at")
    search_fields = ("slug", "name")


@admin.register(Voice)
class VoiceAdmin(admin.ModelAdmin):
    list_display = ("prompt_id", "tenant", "state", "engine", "feature_version", "prompt_seconds", "created_at")
    list_filter = ("tenant", "state", "engine")
    search_fields = ("prompt_id", "prompt_text")
    readonly_fields = ("features_key", "features_sha256", "prompt_audio_key", "prompt_audio_sha256", "metrics", "created_at", "updated_at")
