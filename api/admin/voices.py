"""Voices in the operators' admin panel: list and search, clone from an uploaded prompt,
listen to the prompt and to a synthesized preview, edit the provenance note, remove.

Every change an operator makes goes through the same code as the public API
(``clone_voice``, ``services.remove_voice``) and is written to the audit log.
"""
from __future__ import annotations

import base64
import json
from typing import Any

from asgiref.sync import async_to_sync
from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.core.validators import MaxLengthValidator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.text import Truncator

from api.admin import views as admin_views
from api.admin.site import StyledModelAdmin, short_datetime, site
from api.preview import MAX_PREVIEW_CHARS
from core.errors import ApiError
from tenants import audit, quotas, usage
from tenants.models import AuditEvent
from voices import services
from voices.cloning import clone_voice
from voices.errors import UnknownVoice
from voices.models import Tenant, Voice
from voices.tenancy import default_tenant
from voices.validation import MAX_PROMPT_TEXT_CHARS, check_prompt_id
from workers.executors import run_in_pool

#: what the preview says when the operator types nothing
DEFAULT_PREVIEW_TEXT = "Hello! This is a short preview of this voice. 你好，这是这个声音的试听。"
MAX_NOTE_CHARS = 2000


def admin_actor(request: HttpRequest) -> str:
    return f"admin:{request.user.get_username()}"


class VoiceCloneForm(forms.Form):
    tenant = forms.ModelChoiceField(queryset=Tenant.objects.order_by("slug"), empty_label=None)
    prompt_id = forms.CharField(
        max_length=128, label="Prompt id",
        help_text="The name clients use for this voice (unique within the tenant).")
    prompt_audio = forms.FileField(
        label="Prompt audio", widget=forms.FileInput(attrs={"accept": "audio/*"}),
        help_text="A recording of one speaker: wav, mp3, flac, ogg, m4a, webm or aiff, "
                  f"{settings.TTS_PROMPT_MIN_SECONDS:g} to {settings.TTS_PROMPT_MAX_SECONDS:g} seconds.")
    prompt_text = forms.CharField(
        label="Transcript", max_length=MAX_PROMPT_TEXT_CHARS, widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Exactly the words spoken in the recording.")
    provenance_note = forms.CharField(
        label="Provenance and consent", max_length=MAX_NOTE_CHARS, widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Who the speaker is and on what basis the voice is cloned (e.g. written consent, ticket number).")

    def clean_prompt_id(self) -> str:
        try:
            return check_prompt_id(self.cleaned_data["prompt_id"])
        except ApiError as exc:
            raise forms.ValidationError(exc.message) from None

    def clean_prompt_audio(self) -> Any:
        upload = self.cleaned_data["prompt_audio"]
        if upload.size > settings.TTS_PROMPT_MAX_BYTES:
            raise forms.ValidationError(
                f"the file is {upload.size} bytes; prompts may be at most {settings.TTS_PROMPT_MAX_BYTES} bytes")
        return upload

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        tenant, prompt_id = data.get("tenant"), data.get("prompt_id")
        if tenant is not None and prompt_id and services.voice_exists(tenant, prompt_id):
            self.add_error("prompt_id", f"tenant {tenant.slug} already has a voice called {prompt_id!r}")
        return data


CLONE_FIELDSETS = [
    (None, {"fields": ["tenant", "prompt_id"]}),
    ("Recording", {"fields": ["prompt_audio", "prompt_text"]}),
    ("Provenance", {"fields": ["provenance_note"]}),
]


class SourceFilter(admin.SimpleListFilter):
    title = "source"
    parameter_name = "source"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("clone", "cloned"), ("cache", "loaded from a tone cache")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Voice]) -> QuerySet[Voice]:
        if self.value() == "clone":
            return queryset.filter(source="clone")
        if self.value() == "cache":
            return queryset.filter(source__startswith="cache:")
        return queryset


class ProvenanceFilter(admin.SimpleListFilter):
    title = "provenance note"
    parameter_name = "note"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("yes", "recorded"), ("no", "missing")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Voice]) -> QuerySet[Voice]:
        if self.value() == "yes":
            return queryset.exclude(provenance_note="")
        if self.value() == "no":
            return queryset.filter(provenance_note="")
        return queryset


@admin.register(Voice, site=site)
class VoiceAdmin(StyledModelAdmin):
    list_display = ("prompt_id", "tenant", "state", "similarity", "engine", "source_kind", "prompt_seconds",
                    "provenance", "created")
    list_display_links = ("prompt_id",)
    list_filter = ("tenant", "state", "engine", SourceFilter, ProvenanceFilter)
    search_fields = ("prompt_id", "prompt_text", "provenance_note")
    list_select_related = ("tenant",)
    date_hierarchy = "created_at"
    list_per_page = 50
    change_form_template = "admin/tts/voices/voice/change_form.html"
    add_form_template = "admin/tts/change_form.html"
    fieldsets = [
        (None, {"fields": ["tenant", "prompt_id", "state", "prompt_text"]}),
        ("Provenance and consent", {"fields": ["provenance_note"],
                                    "description": "Changes to this note are written to the audit log."}),
        ("Engine", {"fields": ["engine", "feature_version", "source", "clone_metrics"]}),
        ("Stored prompt and features", {"classes": ["collapse"], "fields": [
            "prompt_container", "prompt_sample_rate", "prompt_seconds", "prompt_audio_key", "prompt_audio_sha256",
            "features_key", "features_sha256"]}),
        ("History", {"fields": ["created_at", "updated_at"]}),
    ]
    readonly_fields = ("tenant", "prompt_id", "state", "prompt_text", "engine", "feature_version", "source",
                       "clone_metrics",
                       "prompt_container", "prompt_sample_rate", "prompt_seconds", "prompt_audio_key",
                       "prompt_audio_sha256", "features_key", "features_sha256", "created_at", "updated_at")

    @admin.display(description="created (UTC)", ordering="created_at")
    def created(self, voice: Voice) -> str:
        return short_datetime(voice.created_at)

    @admin.display(description="SIM")
    def similarity(self, voice: Voice) -> str:
        return "–" if voice.sim is None else f"{voice.sim:.3f}"

    @admin.display(description="source", ordering="source")
    def source_kind(self, voice: Voice) -> str:
        return "tone cache" if voice.source.startswith("cache:") else voice.source

    @admin.display(description="provenance")
    def provenance(self, voice: Voice) -> str:
        if not voice.provenance_note:
            return format_html('<span class="tts-missing">{}</span>', "missing")
        return Truncator(voice.provenance_note).chars(60)

    @admin.display(description="clone metrics")
    def clone_metrics(self, voice: Voice) -> str:
        """What the engine reported at clone time, one row per fact (nested values as JSON)."""
        if not voice.metrics:
            return "–"
        rows = ((key, value if isinstance(value, (str, int, float)) else json.dumps(value, ensure_ascii=False))
                for key, value in sorted(voice.metrics.items()))
        return format_html('<table class="tts-metrics">{}</table>',
                           format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", rows))

    def formfield_for_dbfield(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        field = super().formfield_for_dbfield(db_field, request, **kwargs)
        if db_field.name == "provenance_note" and field is not None:
            field.max_length = MAX_NOTE_CHARS
            field.validators.append(MaxLengthValidator(MAX_NOTE_CHARS))
            field.widget.attrs.update({"rows": 4, "maxlength": MAX_NOTE_CHARS})
        return field

    # --- extra views -----------------------------------------------------------------

    def get_urls(self) -> list[Any]:
        info = self.opts.app_label, self.opts.model_name
        wrap = self.admin_site.admin_view
        return [
            path("<path:object_id>/prompt-audio/", wrap(self.prompt_audio_view), name="%s_%s_prompt_audio" % info),
            path("<path:object_id>/preview.wav", wrap(self.preview_view), name="%s_%s_preview" % info),
            *super().get_urls(),
        ]

    def _viewable(self, request: HttpRequest, object_id: str) -> Voice:
        voice = self.get_object(request, object_id)
        if voice is None:
            raise admin_views.VoiceGone()
        if not self.has_view_or_change_permission(request, voice):
            raise PermissionDenied
        return voice

    def prompt_audio_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        try:
            return admin_views.prompt_audio_response(self._viewable(request, object_id))
        except admin_views.VoiceGone as exc:
            return admin_views.plain_error(exc)

    def preview_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        text = request.GET.get("text", "").strip() or DEFAULT_PREVIEW_TEXT
        try:
            return admin_views.preview_response(self._viewable(request, object_id), text)
        except admin_views.VoiceGone as exc:
            return admin_views.plain_error(exc)

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "",
                    extra_context: dict[str, Any] | None = None) -> HttpResponse:
        info = self.opts.app_label, self.opts.model_name
        extra = {
            "prompt_audio_url": reverse("admin:%s_%s_prompt_audio" % info, args=[object_id],
                                        current_app=self.admin_site.name),
            "preview_url": reverse("admin:%s_%s_preview" % info, args=[object_id], current_app=self.admin_site.name),
            "default_preview_text": DEFAULT_PREVIEW_TEXT,
            "max_preview_chars": MAX_PREVIEW_CHARS,
        }
        return super().change_view(request, object_id, form_url, {**extra, **(extra_context or {})})

    # --- cloning (the add page) --------------------------------------------------------

    def add_view(self, request: HttpRequest, form_url: str = "",
                 extra_context: dict[str, Any] | None = None) -> HttpResponse:
        """Clone a voice from an uploaded recording.

        Not the ModelAdmin's add flow: that runs inside one database transaction, and a
        clone must not hold the database (SQLite's write lock) for the seconds it takes.
        """
        if not self.has_add_permission(request):
            raise PermissionDenied
        if request.method == "POST":
            form = VoiceCloneForm(request.POST, request.FILES)
            if form.is_valid():
                voice = self._clone(request, form)
                if voice is not None:
                    self.message_user(request, format_html(
                        "Cloned voice “{}” for tenant {} from {} s of {}. Listen to it below.",
                        voice.prompt_id, voice.tenant.slug, voice.prompt_seconds, voice.prompt_container),
                        messages.SUCCESS)
                    return HttpResponseRedirect(reverse("admin:voices_voice_change", args=[voice.pk],
                                                        current_app=self.admin_site.name))
        else:
            form = VoiceCloneForm(initial={"tenant": self._initial_tenant(request)})
        return self.render_plain_add_form(request, form, CLONE_FIELDSETS, title="Clone a voice",
                                          extra_context=extra_context)

    @staticmethod
    def _initial_tenant(request: HttpRequest) -> Tenant | None:
        wanted = request.GET.get("tenant")
        if wanted and wanted.isdigit():
            tenant = Tenant.objects.filter(pk=int(wanted)).first()
            if tenant is not None:
                return tenant
        return default_tenant()  # the tenant open-mode clients use; created on first use anyway

    def _clone(self, request: HttpRequest, form: VoiceCloneForm) -> Voice | None:
        data = form.cleaned_data
        tenant: Tenant = data["tenant"]
        prompt_id: str = data["prompt_id"]
        note: str = data["provenance_note"]
        source = base64.b64encode(data["prompt_audio"].read()).decode("ascii")
        try:
            # The tenant's voice limit binds operators too (refused early here, and for
            # certain where the row is inserted); the hourly clone rate is for API callers.
            quotas.check_voice_count(tenant.id, quotas.limits_of(tenant.id))
            # The clone pool bounds clones per process, exactly as for POST /clone.
            # path_roots=(): the upload is bytes, never a path on the server.
            existed = async_to_sync(run_in_pool)("clone", clone_voice, tenant, prompt_id, source,
                                                 data["prompt_text"], None, note, ())
        except ApiError as exc:
            form.add_error(_field_of(exc.message), exc.message)
            return None
        if existed:  # another clone of the same id won the race
            form.add_error("prompt_id", f"tenant {tenant.slug} already has a voice called {prompt_id!r}")
            return None
        usage.record(tenant.id, clones=1)  # the tenant's usage, whoever started the clone
        audit.record(tenant.id, admin_actor(request), AuditEvent.Action.CLONE, prompt_id, note)
        voice = Voice.objects.select_related("tenant").get(tenant=tenant, prompt_id=prompt_id)
        self.log_addition(request, voice, [{"added": {}}])
        return voice

    # --- the provenance note -----------------------------------------------------------

    def save_model(self, request: HttpRequest, obj: Voice, form: forms.ModelForm, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if change and "provenance_note" in form.changed_data:
            audit.record(obj.tenant_id, admin_actor(request), AuditEvent.Action.NOTE, obj.prompt_id,
                         obj.provenance_note)

    # --- removal: the same as POST /remove (row, cached features, stored blobs) -----------

    def delete_model(self, request: HttpRequest, obj: Voice) -> None:
        remove_voice_as_admin(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Voice]) -> None:
        for voice in queryset.select_related("tenant"):
            remove_voice_as_admin(request, voice)


def remove_voice_as_admin(request: HttpRequest, voice: Voice) -> None:
    try:
        services.remove_voice(voice.tenant, voice.prompt_id)
    except UnknownVoice:
        return  # removed meanwhile (by the API or another operator): nothing left to do
    audit.record(voice.tenant_id, admin_actor(request), AuditEvent.Action.REMOVE, voice.prompt_id)


def _field_of(message: str) -> str | None:
    """Which form field a clone error is about, so it is shown next to that field."""
    lowered = message.lower()
    if "prompt_text" in lowered or "transcript" in lowered:
        return "prompt_text"
    if "prompt audio" in lowered or "prompt_audio" in lowered:
        return "prompt_audio"
    return None
