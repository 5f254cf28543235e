"""The operators' admin panel: one AdminSite with the platform's look and a useful index.

Django's own admin templates come first in the template search order (the admin app is
listed before ours), so instead of overriding ``admin/base_site.html`` every page uses a
thin wrapper template from ``voices/templates/admin/tts/`` that adds our stylesheet; the
site and ``StyledModelAdmin`` point every view at those wrappers.
"""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from django.contrib import admin
from django.contrib.admin import helpers
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group
from django.db.models import Q, Sum
from django.forms import Form
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils import timezone

from tenants.models import ApiKey, AuditEvent, UsageDay
from voices.models import Tenant, Voice


class TtsAdminSite(admin.AdminSite):
    site_header = "TTS platform admin"
    site_title = "TTS platform admin"
    index_title = "Operations"
    site_url = None  # the service has no web site of its own to "view"
    index_template = "admin/tts/index.html"
    app_index_template = "admin/tts/app_index.html"
    login_template = "admin/tts/login.html"
    logout_template = "admin/tts/logged_out.html"
    password_change_template = "admin/tts/password_change_form.html"
    password_change_done_template = "admin/tts/password_change_done.html"

    def index(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> TemplateResponse:
        return super().index(request, {"dashboard": dashboard(self.panels_for(request)), **(extra_context or {})})

    def panels_for(self, request: HttpRequest) -> frozenset[str]:
        """The dashboard panels this user may see: each needs view permission on the model
        whose rows it counts or lists (staff status alone shows none of them)."""
        shown = {name for name, model in (("tenants", Tenant), ("voices", Voice), ("api_keys", ApiKey),
                                          ("usage", UsageDay), ("events", AuditEvent))
                 if self._may(request, model, "view")}
        shown |= {f"add_{name}" for name, model in (("voice", Voice), ("key", ApiKey), ("tenant", Tenant))
                  if self._may(request, model, "add")}
        return frozenset(shown)

    def _may(self, request: HttpRequest, model: type, action: str) -> bool:
        """What the model's own admin page would allow (a model without one: nothing)."""
        model_admin = self._registry.get(model)
        if model_admin is None:
            return False
        return bool(model_admin.has_view_permission(request) if action == "view"
                    else model_admin.has_add_permission(request))


def dashboard(panels: frozenset[str]) -> dict[str, Any]:
    """Counts for the index page, only those of ``panels`` (a handful of small aggregate queries)."""
    today = datetime.now(UTC).date()
    data: dict[str, Any] = {"today": today, "show": {name: True for name in panels}}
    if "tenants" in panels:
        data["tenants"] = Tenant.objects.count()
    if "voices" in panels:
        data["voices"] = Voice.objects.count()
        data["voices_without_note"] = Voice.objects.filter(provenance_note="").count()
    if "api_keys" in panels:
        now = timezone.now()
        data["active_keys"] = ApiKey.objects.filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now),
                                                    revoked_at__isnull=True).count()
    if "usage" in panels:
        totals = ("characters", "audio_seconds", "streams", "clones")
        usage_today = UsageDay.objects.filter(day=today).aggregate(**{name: Sum(name) for name in totals})
        usage_week = UsageDay.objects.filter(day__gt=today - timedelta(days=7)).aggregate(
            **{name: Sum(name) for name in totals})
        data["usage_today"] = {name: usage_today[name] or 0 for name in totals}
        data["usage_week"] = {name: usage_week[name] or 0 for name in totals}
    if "events" in panels:
        data["recent_events"] = list(AuditEvent.objects.select_related("tenant")[:8])
    return data


site = TtsAdminSite(name="admin")


def short_datetime(value: datetime | None) -> str:
    """Compact UTC timestamps for list columns (Django's default format is long for a laptop screen)."""
    return "–" if value is None else timezone.localtime(value).strftime("%Y-%m-%d %H:%M")


class StyledModelAdmin(admin.ModelAdmin):
    """A ModelAdmin whose pages carry the platform's stylesheet."""

    change_form_template = "admin/tts/change_form.html"
    change_list_template = "admin/tts/change_list.html"
    delete_confirmation_template = "admin/tts/delete_confirmation.html"
    delete_selected_confirmation_template = "admin/tts/delete_selected_confirmation.html"
    object_history_template = "admin/tts/object_history.html"

    def render_plain_add_form(self, request: HttpRequest, form: Form, fieldsets: list[tuple[str | None, dict]],
                              *, title: str, extra_context: dict[str, Any] | None = None) -> TemplateResponse:
        """The admin's add page for a plain (non-model) form, for add views that do their own saving."""
        admin_form = helpers.AdminForm(form, fieldsets, {}, (), model_admin=self)
        context = {
            **self.admin_site.each_context(request),
            "title": title,
            "subtitle": None,
            "adminform": admin_form,
            "object_id": None,
            "original": None,
            "is_popup": False,
            "to_field": None,
            "media": self.media + admin_form.media,
            "inline_admin_formsets": [],
            "errors": helpers.AdminErrorList(form, []),
            "preserved_filters": self.get_preserved_filters(request),
            "show_save_and_add_another": False,
            "show_save_and_continue": False,
            **(extra_context or {}),
        }
        return self.render_change_form(request, context, add=True)


@admin.register(get_user_model(), site=site)
class StyledUserAdmin(StyledModelAdmin, UserAdmin):
    add_form_template = "admin/tts/auth/user/add_form.html"
    change_user_password_template = "admin/tts/auth/user/change_password.html"


@admin.register(Group, site=site)
class StyledGroupAdmin(StyledModelAdmin, GroupAdmin):
    pass
