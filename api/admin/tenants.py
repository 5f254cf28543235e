"""Tenants, API keys, quotas, usage and the audit log in the operators' admin panel.

API keys are shown by prefix only; the full key exists once, on the page that follows
its creation, and nowhere else (only its SHA-256 is stored, and never displayed).
Usage and the audit log are read-only. Key creation and revocation are audited.
"""
from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.widgets import AdminSplitDateTime
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Count, Q, QuerySet, Sum
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.text import Truncator

from api.admin.site import StyledModelAdmin, short_datetime, site
from api.admin.voices import admin_actor, remove_voice_as_admin
from tenants import audit
from tenants.keys import create_key, revoke_key
from tenants.models import ApiKey, AuditEvent, Quota, SavedBundle, Scope, UsageDay
from voices.models import Tenant

QUOTA_FIELDS = ("max_concurrent_streams", "max_chars_per_day", "max_voices", "max_clones_per_hour",
                "max_payload_bytes", "max_concurrent_batches")


def _changelist(model: str, **filters: object) -> str:
    url = reverse(f"admin:{model}_changelist", current_app=site.name)
    if filters:
        url += "?" + "&".join(f"{k}={v}" for k, v in filters.items())
    return url


def key_label(row: ApiKey) -> str:
    return f"tts_{row.prefix}_…"


# --- tenants and their quota ------------------------------------------------------------


class QuotaInline(admin.StackedInline):
    model = Quota
    fields = QUOTA_FIELDS
    extra = 1
    max_num = 1
    can_delete = True
    verbose_name = "quota"
    verbose_name_plural = "quota (an empty field means no limit)"


@admin.register(Tenant, site=site)
class TenantAdmin(StyledModelAdmin):
    list_display = ("slug", "name", "voice_count", "active_key_count", "has_quota", "created")
    search_fields = ("slug", "name")
    ordering = ("slug",)
    prepopulated_fields = {"slug": ("name",)}
    inlines = [QuotaInline]

    def get_fields(self, request: HttpRequest, obj: Tenant | None = None) -> list[str]:
        return ["name", "slug"] if obj is None else ["name", "slug", "related", "created_at"]

    def get_readonly_fields(self, request: HttpRequest, obj: Tenant | None = None) -> list[str]:
        # The slug is fixed once the tenant exists: "default" is what open mode looks up.
        return [] if obj is None else ["slug", "related", "created_at"]

    def get_prepopulated_fields(self, request: HttpRequest, obj: Tenant | None = None) -> dict[str, tuple[str, ...]]:
        return {"slug": ("name",)} if obj is None else {}

    def get_queryset(self, request: HttpRequest) -> QuerySet[Tenant]:
        return super().get_queryset(request).select_related("quota").annotate(
            voice_count=Count("voices", distinct=True),
            active_key_count=Count("api_keys", filter=Q(api_keys__revoked_at__isnull=True), distinct=True),
        )

    @admin.display(description="voices", ordering="voice_count")
    def voice_count(self, tenant: Tenant) -> str:
        return format_html('<a href="{}">{}</a>', _changelist("voices_voice", tenant__id__exact=tenant.pk),
                           tenant.voice_count)

    @admin.display(description="unrevoked keys", ordering="active_key_count")
    def active_key_count(self, tenant: Tenant) -> str:
        return format_html('<a href="{}">{}</a>', _changelist("tenants_apikey", tenant__id__exact=tenant.pk),
                           tenant.active_key_count)

    @admin.display(description="created (UTC)", ordering="created_at")
    def created(self, tenant: Tenant) -> str:
        return short_datetime(tenant.created_at)

    @admin.display(description="quota", boolean=True)
    def has_quota(self, tenant: Tenant) -> bool:
        return hasattr(tenant, "quota")

    @admin.display(description="related")
    def related(self, tenant: Tenant) -> str:
        if tenant.pk is None:
            return "–"
        voices = tenant.voices.count()
        keys = tenant.api_keys.count()
        links = [
            (_changelist("voices_voice", tenant__id__exact=tenant.pk), f"{voices} voice{'s' * (voices != 1)}"),
            (_changelist("tenants_apikey", tenant__id__exact=tenant.pk), f"{keys} API key{'s' * (keys != 1)}"),
            (_changelist("tenants_usageday", tenant__id__exact=tenant.pk), "usage"),
            (_changelist("tenants_auditevent", tenant__id__exact=tenant.pk), "audit log"),
            (reverse("admin:voices_voice_add", current_app=site.name) + f"?tenant={tenant.pk}", "clone a voice"),
            (reverse("admin:tenants_apikey_add", current_app=site.name) + f"?tenant={tenant.pk}",
             "create an API key"),
        ]
        return format_html('<span class="tts-links">{}</span>',
                           format_html_join(" · ", '<a href="{}">{}</a>', links))

    def delete_model(self, request: HttpRequest, obj: Tenant) -> None:
        for voice in obj.voices.all():  # their stored blobs too, not only the rows
            remove_voice_as_admin(request, voice)
        super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Tenant]) -> None:
        for tenant in queryset:
            self.delete_model(request, tenant)


@admin.register(Quota, site=site)
class QuotaAdmin(StyledModelAdmin):
    """All tenants' limits on one page, editable in place (also inline on each tenant)."""

    list_display = ("tenant", *QUOTA_FIELDS)
    list_editable = QUOTA_FIELDS
    list_select_related = ("tenant",)
    search_fields = ("tenant__slug", "tenant__name")
    ordering = ("tenant__slug",)
    fields = ("tenant", *QUOTA_FIELDS)

    def get_readonly_fields(self, request: HttpRequest, obj: Quota | None = None) -> tuple[str, ...]:
        return ("tenant",) if obj is not None else ()


# --- API keys -------------------------------------------------------------------------


class ApiKeyCreateForm(forms.Form):
    tenant = forms.ModelChoiceField(queryset=Tenant.objects.order_by("slug"), empty_label=None)
    name = forms.CharField(max_length=200, required=False,
                           help_text="What the key is for, so people recognise it later (e.g. “mobile app, prod”).")
    scopes = forms.MultipleChoiceField(choices=Scope.choices, widget=forms.CheckboxSelectMultiple,
                                       initial=[Scope.SYNTHESIZE], help_text="Give a key only what its client needs.")
    expires_at = forms.SplitDateTimeField(required=False, widget=AdminSplitDateTime, label="Expires",
                                          help_text="Optional (UTC). Empty: the key does not expire.")

    def clean_expires_at(self) -> Any:
        value = self.cleaned_data["expires_at"]
        if value is not None and value <= timezone.now():
            raise forms.ValidationError("the expiry must be in the future")
        return value


KEY_FIELDSETS = [(None, {"fields": ["tenant", "name", "scopes", "expires_at"]})]


class KeyStatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("active", "active"), ("expired", "expired"), ("revoked", "revoked")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> QuerySet[ApiKey]:
        now = timezone.now()
        if self.value() == "active":
            return queryset.filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now), revoked_at__isnull=True)
        if self.value() == "expired":
            return queryset.filter(expires_at__lte=now, revoked_at__isnull=True)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


@admin.register(ApiKey, site=site)
class ApiKeyAdmin(StyledModelAdmin):
    list_display = ("key", "name", "tenant", "scope_list", "status", "created", "expires", "last_used")
    list_display_links = ("key", "name")
    list_filter = (KeyStatusFilter, "tenant")
    search_fields = ("prefix", "name", "tenant__slug")
    list_select_related = ("tenant",)
    actions = ["revoke_selected"]
    # Never the hash: it is not on any page, form, filter or search.
    fields = ("key", "name", "tenant", "scope_list", "status", "created_at", "expires_at", "revoked_at",
              "last_used_at")
    readonly_fields = ("key", "tenant", "scope_list", "status", "created_at", "expires_at", "revoked_at",
                       "last_used_at")

    @admin.display(description="key", ordering="prefix")
    def key(self, row: ApiKey) -> str:
        return format_html('<code class="tts-key-prefix">{}</code>', key_label(row))

    @admin.display(description="created (UTC)", ordering="created_at")
    def created(self, row: ApiKey) -> str:
        return short_datetime(row.created_at)

    @admin.display(description="expires", ordering="expires_at")
    def expires(self, row: ApiKey) -> str:
        return short_datetime(row.expires_at) if row.expires_at else "never"

    @admin.display(description="last used", ordering="last_used_at")
    def last_used(self, row: ApiKey) -> str:
        return short_datetime(row.last_used_at) if row.last_used_at else "never"

    @admin.display(description="scopes")
    def scope_list(self, row: ApiKey) -> str:
        return ", ".join(row.scopes) or "–"

    @admin.display(description="status", ordering="revoked_at")
    def status(self, row: ApiKey) -> str:
        when = ""
        if row.revoked_at is not None:
            label, when = "revoked", short_datetime(row.revoked_at)
        elif row.expires_at is not None and row.expires_at <= timezone.now():
            label = "expired"
        else:
            label = "active"
        badge = format_html('<span class="tts-badge tts-status-{}">{}</span>', label, label)
        return format_html('{}<span class="tts-sub">{}</span>', badge, when) if when else badge

    def has_delete_permission(self, request: HttpRequest, obj: ApiKey | None = None) -> bool:
        return False  # keys are revoked, not deleted: their audit trail stays meaningful

    def add_view(self, request: HttpRequest, form_url: str = "",
                 extra_context: dict[str, Any] | None = None) -> HttpResponse:
        """Create a key and show it, once, on the page that answers the POST (it is stored nowhere)."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        if request.method == "POST":
            form = ApiKeyCreateForm(request.POST)
            if form.is_valid():
                return self._create(request, form)
        else:
            initial: dict[str, Any] = {}
            wanted = request.GET.get("tenant", "")
            if wanted.isdigit():
                initial["tenant"] = Tenant.objects.filter(pk=int(wanted)).first()
            form = ApiKeyCreateForm(initial=initial)
        return self.render_plain_add_form(request, form, KEY_FIELDSETS, title="Create an API key",
                                          extra_context=extra_context)

    def _create(self, request: HttpRequest, form: ApiKeyCreateForm) -> HttpResponse:
        data = form.cleaned_data
        tenant: Tenant = data["tenant"]
        with transaction.atomic():
            row, key = create_key(tenant, data["scopes"], name=data["name"], expires_at=data["expires_at"])
            expiry = row.expires_at.isoformat() if row.expires_at else "never"
            audit.record(tenant.id, admin_actor(request), AuditEvent.Action.KEY_CREATED, "",
                         f"{key_label(row)} name={row.name!r} scopes={','.join(row.scopes)} expires={expiry}")
            self.log_addition(request, row, [{"added": {}}])
        context = {
            **self.admin_site.each_context(request),
            "title": "API key created",
            "subtitle": None,
            "opts": self.opts,
            "row": row,
            "key": key,
            "api_base": request.build_absolute_uri("/").rstrip("/"),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/tts/tenants/apikey/created.html", context)

    @admin.action(description="Revoke selected API keys", permissions=["change"])
    def revoke_selected(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        revoked = already = 0
        for row in queryset.select_related("tenant"):
            if row.revoked_at is not None:
                already += 1
                continue
            revoke_key(row)
            audit.record(row.tenant_id, admin_actor(request), AuditEvent.Action.KEY_REVOKED, "",
                         f"{key_label(row)} name={row.name!r}")
            self.log_change(request, row, "Revoked.")
            revoked += 1
        message = f"Revoked {revoked} API key{'s' * (revoked != 1)}."
        if already:
            message += f" {already} {'was' if already == 1 else 'were'} already revoked."
        self.message_user(request, message, messages.SUCCESS if revoked else messages.WARNING)


# --- usage and the audit log (read-only) -------------------------------------------------


class ReadOnlyAdmin(StyledModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


USAGE_TOTALS = ("characters", "audio_seconds", "streams", "clones")


@admin.register(UsageDay, site=site)
class UsageDayAdmin(ReadOnlyAdmin):
    list_display = ("day_iso", "tenant", "characters", "audio", "streams", "clones")
    list_filter = ("tenant", "day")
    date_hierarchy = "day"
    list_select_related = ("tenant",)
    search_fields = ("tenant__slug",)
    change_list_template = "admin/tts/tenants/usageday/change_list.html"

    @admin.display(description="day (UTC)", ordering="day")
    def day_iso(self, row: UsageDay) -> str:
        return row.day.isoformat()

    @admin.display(description="audio (s)", ordering="audio_seconds")
    def audio(self, row: UsageDay) -> str:
        return f"{row.audio_seconds:,.1f}"

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        response = super().changelist_view(request, extra_context)
        changelist = getattr(response, "context_data", {}).get("cl")
        if changelist is not None:  # totals of what the filters select, across all pages
            totals = changelist.queryset.aggregate(**{name: Sum(name) for name in USAGE_TOTALS})
            response.context_data["usage_totals"] = {name: totals[name] or 0 for name in USAGE_TOTALS}
        return response


class ActorKindFilter(admin.SimpleListFilter):
    title = "actor"
    parameter_name = "actor_kind"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("admin", "an operator (admin)"), ("key", "an API key"), ("open", "open mode (no key)"),
                ("system", "the system")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[AuditEvent]) -> QuerySet[AuditEvent]:
        value = self.value()
        if value in ("admin", "key"):
            return queryset.filter(actor__startswith=f"{value}:")
        if value in ("open", "system"):
            return queryset.filter(actor=value)
        return queryset


@admin.register(AuditEvent, site=site)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ("when", "tenant", "actor", "action_badge", "prompt_id", "short_detail")
    list_filter = ("action", "tenant", ActorKindFilter, "at")
    date_hierarchy = "at"
    search_fields = ("actor", "prompt_id", "detail")
    list_select_related = ("tenant",)
    list_per_page = 100

    @admin.display(description="when (UTC)", ordering="at")
    def when(self, event: AuditEvent) -> str:
        return short_datetime(event.at)

    @admin.display(description="action", ordering="action")
    def action_badge(self, event: AuditEvent) -> str:
        return format_html('<span class="tts-badge tts-action-{}">{}</span>', event.action, event.get_action_display())

    @admin.display(description="detail")
    def short_detail(self, event: AuditEvent) -> str:
        return Truncator(event.detail).chars(80)


@admin.register(SavedBundle, site=site)
class SavedBundleAdmin(ReadOnlyAdmin):
    """Tone-cache bundles written through /cache/save (the bundles are files or S3 objects)."""

    list_display = ("when", "tenant", "location", "voice_count", "actor")
    list_filter = ("tenant", "created_at")
    date_hierarchy = "created_at"
    search_fields = ("location", "actor", "tenant__slug")
    list_select_related = ("tenant",)

    @admin.display(description="saved (UTC)", ordering="created_at")
    def when(self, bundle: SavedBundle) -> str:
        return short_datetime(bundle.created_at)

    @admin.display(description="voices")
    def voice_count(self, bundle: SavedBundle) -> int:
        return len(bundle.prompt_ids or [])
