"""Voices and the tenants that own them. Every query goes through a tenant."""
from __future__ import annotations

from django.db import models


class Tenant(models.Model):
    DEFAULT_SLUG = "default"

    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.slug


class Voice(models.Model):
    class State(models.TextChoices):
        READY = "ready", "ready"
        REFINING = "refining", "refining"

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="voices")
    prompt_id = models.CharField(max_length=128)
    prompt_text = models.TextField()
    state = models.CharField(max_length=16, choices=State.choices, default=State.READY)

    engine = models.CharField(max_length=64)
    feature_version = models.CharField(max_length=64)
    #: key of the feature blob in the feature store, and its sha256 (checked on every read)
    features_key = models.CharField(max_length=255)
    features_sha256 = models.CharField(max_length=64)
    #: the original prompt bytes, kept so features can be re-derived when the engine changes
    prompt_audio_key = models.CharField(max_length=255, blank=True)
    prompt_audio_sha256 = models.CharField(max_length=64, blank=True)
    prompt_container = models.CharField(max_length=32, blank=True)
    prompt_sample_rate = models.PositiveIntegerField(default=0)
    prompt_seconds = models.FloatField(default=0.0)
    #: engine-reported facts about the clone (chosen voices, similarity, ...)
    metrics = models.JSONField(default=dict, blank=True)
    #: where the voice came from: "clone" or "cache:<path>"
    source = models.CharField(max_length=512, default="clone")
    #: consent or provenance: who the speaker is and on what basis the voice was cloned
    provenance_note = models.TextField(blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "prompt_id"], name="unique_prompt_id_per_tenant")]
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.tenant.slug}/{self.prompt_id}"

    @property
    def sim(self) -> float | None:
        """The similarity the voice reached: its rendition of the prompt's transcript against the
        prompt (after refinement when refined); None when the engine does not measure it."""
        metrics = self.metrics if isinstance(self.metrics, dict) else {}
        for key in ("sim_after", "sim"):
            value = metrics.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
        return None
