"""Who may call the API, how much, and what they used and did.

The Tenant itself lives in ``voices.models`` (voices were tenant-scoped from the start);
this app adds what hosting needs around it.
"""
from __future__ import annotations

from django.db import models
from django.utils import timezone

from voices.models import Tenant


class Scope(models.TextChoices):
    SYNTHESIZE = "synthesize", "synthesize (WebSocket /tts)"
    CLONE = "clone", "clone voices (/clone)"
    MANAGE_VOICES = "manage-voices", "remove voices (/remove)"
    MANAGE_CACHES = "manage-caches", "save and load tone caches (/cache/*)"
    BATCH = "batch", "batch jobs (/batches)"


ALL_SCOPES = tuple(Scope.values)


class ApiKey(models.Model):
    """An API key; only its SHA-256 is stored. The key is shown once, at creation."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=200, blank=True)
    #: the key's public part (``tts_<prefix>_...``), for lookup and for people to recognise it
    prefix = models.CharField(max_length=16, unique=True)
    key_sha256 = models.CharField(max_length=64)
    scopes = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"tts_{self.prefix}_… ({self.tenant.slug})"

    @property
    def active(self) -> bool:
        now = timezone.now()
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


class Quota(models.Model):
    """Per-tenant limits; an empty field means no limit."""

    tenant = models.OneToOneField(Tenant, on_delete=models.CASCADE, related_name="quota")
    max_concurrent_streams = models.PositiveIntegerField(null=True, blank=True)
    max_chars_per_day = models.PositiveBigIntegerField(null=True, blank=True)
    max_voices = models.PositiveIntegerField(null=True, blank=True)
    max_clones_per_hour = models.PositiveIntegerField(null=True, blank=True)
    max_payload_bytes = models.PositiveIntegerField(null=True, blank=True)
    #: batch jobs queued or running at once
    max_concurrent_batches = models.PositiveIntegerField(null=True, blank=True)

    def __str__(self) -> str:
        return f"quota of {self.tenant.slug}"


class UsageDay(models.Model):
    """What a tenant used on one day (UTC), recorded once per request."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="usage")
    day = models.DateField()
    characters = models.PositiveBigIntegerField(default=0)
    audio_seconds = models.FloatField(default=0.0)
    streams = models.PositiveIntegerField(default=0)
    clones = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "day"], name="one_usage_row_per_tenant_day")]
        ordering = ["-day"]
        verbose_name = "usage (per day)"
        verbose_name_plural = "usage (per day)"

    def __str__(self) -> str:
        return f"{self.tenant.slug} {self.day}"


class AuditEvent(models.Model):
    class Action(models.TextChoices):
        CLONE = "clone", "cloned"
        LOAD = "load", "loaded from a tone cache"
        REMOVE = "remove", "removed"
        SAVE = "save", "saved to a tone cache"
        NOTE = "note", "provenance note changed"
        KEY_CREATED = "key-created", "API key created"
        KEY_REVOKED = "key-revoked", "API key revoked"
        BATCH_CREATED = "batch-created", "batch job created"
        BATCH_CANCELLED = "batch-cancelled", "batch job cancelled"
        BATCH_DELETED = "batch-deleted", "batch job deleted"

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="audit_events")
    at = models.DateTimeField(default=timezone.now, db_index=True)
    #: "key:<prefix>", "admin:<username>", "open" (no key, open mode) or "system"
    actor = models.CharField(max_length=200)
    action = models.CharField(max_length=32, choices=Action.choices)
    prompt_id = models.CharField(max_length=128, blank=True)
    detail = models.TextField(blank=True)

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.actor} {self.action} {self.prompt_id}"


class SavedBundle(models.Model):
    """A tone-cache bundle written by /cache/save (the bundle itself is a file or S3 object)."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="saved_bundles")
    location = models.CharField(max_length=4200)
    prompt_ids = models.JSONField(default=list)
    actor = models.CharField(max_length=200)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "tone-cache bundle"

    def __str__(self) -> str:
        return self.location
