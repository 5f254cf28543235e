"""Batch jobs and their items. The database is the queue: an item's state says whether it
still has to run, so pending work survives a restart of any process."""
from __future__ import annotations

from django.db import models
from django.utils import timezone

from voices.models import Tenant


class Batch(models.Model):
    class State(models.TextChoices):
        QUEUED = "queued", "queued"
        RUNNING = "running", "running"
        SUCCEEDED = "succeeded", "succeeded"
        PARTIALLY_SUCCEEDED = "partially_succeeded", "partially succeeded"
        FAILED = "failed", "failed"
        CANCELLED = "cancelled", "cancelled"

    #: states in which items may still run
    ACTIVE = (State.QUEUED, State.RUNNING)

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="batches")
    #: chosen by the client (3-64 chars [A-Za-z0-9_-]); unique per tenant
    batch_id = models.CharField(max_length=64)
    #: sha256 of the normalised create body: the same body again is a retry, another one a conflict
    body_sha256 = models.CharField(max_length=64)
    prompt_id = models.CharField(max_length=128)
    audio_format = models.CharField(max_length=8)
    sample_rate = models.PositiveIntegerField()
    instruct_text = models.TextField(null=True, blank=True)
    timestamps = models.BooleanField(default=False)
    callback_url = models.CharField(max_length=2048, blank=True)
    #: HMAC key of the callback's signature; shown to the client once, at creation
    callback_secret = models.CharField(max_length=64, blank=True)
    destination = models.CharField(max_length=1024, blank=True)
    ttl_hours = models.PositiveIntegerField(default=168)
    #: delivery of the callback: "" (none due), pending, sending, delivered, failed
    callback_state = models.CharField(max_length=16, blank=True, db_index=True)
    callback_attempts = models.PositiveSmallIntegerField(default=0)
    callback_next_at = models.DateTimeField(null=True, blank=True)
    callback_claimed_at = models.DateTimeField(null=True, blank=True)
    callback_delivered_at = models.DateTimeField(null=True, blank=True)
    callback_error = models.TextField(blank=True)
    state = models.CharField(max_length=24, choices=State.choices, default=State.QUEUED, db_index=True)
    #: characters of all items' texts (reserved against the daily quota at creation)
    characters = models.PositiveIntegerField(default=0)
    actor = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(db_index=True)
    #: when its pending items were last handed to the runners (a retried PUT hands them again,
    #: at most once per REQUEUE_AFTER_S: the queue may have lost them, but it must not fill with copies)
    queued_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "batch_id"], name="unique_batch_id_per_tenant")]
        ordering = ["-id"]
        verbose_name = "batch job"

    def __str__(self) -> str:
        return f"{self.tenant.slug}/{self.batch_id}"

    @property
    def active(self) -> bool:
        return self.state in self.ACTIVE


class BatchItem(models.Model):
    class State(models.TextChoices):
        PENDING = "pending", "pending"
        RUNNING = "running", "running"
        SUCCEEDED = "succeeded", "succeeded"
        FAILED = "failed", "failed"
        CANCELLED = "cancelled", "cancelled"

    #: states an item does not leave
    FINAL = (State.SUCCEEDED, State.FAILED, State.CANCELLED)

    batch = models.ForeignKey(Batch, on_delete=models.CASCADE, related_name="items")
    index = models.PositiveIntegerField()
    name = models.CharField(max_length=200, blank=True)
    text = models.TextField()
    prompt_id = models.CharField(max_length=128)
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING, db_index=True)
    #: runs that claimed the item (a run killed mid-item, a retry)
    attempts = models.PositiveSmallIntegerField(default=0)
    #: token of the run that holds the item, and when it last said it is alive (its lease)
    claim = models.CharField(max_length=32, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    seconds = models.FloatField(null=True, blank=True)
    error = models.TextField(blank=True)
    #: the output file in the feature store; its key derives from (batch, index), so a run
    #: that happens twice writes the same one object
    output_key = models.CharField(max_length=255, blank=True)
    output_sha256 = models.CharField(max_length=64, blank=True)
    output_bytes = models.PositiveBigIntegerField(default=0)
    words = models.JSONField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["batch", "index"], name="unique_item_index_per_batch")]
        ordering = ["index"]
        indexes = [models.Index(fields=["state", "batch"], name="batch_item_state")]

    def __str__(self) -> str:
        return f"{self.batch} #{self.index}"
