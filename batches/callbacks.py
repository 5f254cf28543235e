"""Telling a client its batch job ended: the job (without items) POSTed to its ``callback_url``,
signed with ``X-TTS-Signature: sha256=<HMAC-SHA256 hex of the body>`` keyed by the job's
``callback_secret``.

The delivery's state lives on the job's row, so it survives restarts: due when the job
ends, claimed by one sender at a time, retried with exponential backoff (1 s, 2 s, 4 s ...
at most 10 min apart) until TTS_CALLBACK_RETRY_SECONDS after the job ended, then failed. The
first attempt starts at once, in a thread of the process that ended the job; the batch sweep
(batches/sweep.py) makes the retries and takes over attempts whose process died.

The URL policy of /clone applies: http(s) only, and no private, local or reserved address
(checked when the job is created, and again on every connection, so DNS cannot change its
answer in between) unless TTS_CALLBACK_ALLOW_PRIVATE_URLS.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
from datetime import datetime, timedelta

from django.conf import settings
from django.db import close_old_connections
from django.db.models import Q
from django.utils import timezone

from batches.models import Batch
from batches.shape import annotated_batches, describe
from batches.validation import MAX_CALLBACK_URL_CHARS
from core.errors import ApiError
from voices.errors import InvalidRequest
from voices.url_fetch import check_url, is_public_address, post_checked, resolve_host

log = logging.getLogger(__name__)

LABEL = "callback_url"
SIGNATURE_HEADER = "X-TTS-Signature"
BACKOFF_BASE_S = 1.0
BACKOFF_MAX_S = 600.0
#: a delivery claimed longer ago than this belongs to a process that died
CLAIM_S = 120.0


class State:
    PENDING = "pending"
    SENDING = "sending"
    DELIVERED = "delivered"
    FAILED = "failed"


def check_callback_url(url: str) -> str:
    """The URL, if a callback may go there (blocking: resolves the host); else 400."""
    if len(url) > MAX_CALLBACK_URL_CHARS:
        raise InvalidRequest(f"callback_url must be at most {MAX_CALLBACK_URL_CHARS} characters")
    try:
        parsed = check_url(url, LABEL)
        if not settings.TTS_CALLBACK_ALLOW_PRIVATE_URLS:
            port = parsed.port or (443 if parsed.scheme == "https" else 80)
            if not all(is_public_address(ip) for ip in resolve_host(parsed.host, port)):
                raise InvalidRequest("callback_url points to a private, local or reserved network address, "
                                     "which this server does not call")
    except InvalidRequest:
        raise
    except ApiError as exc:
        raise InvalidRequest(exc.message.replace("could not fetch prompt_audio URL", "bad callback_url")) from None
    return url


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def job_ended(batch_pk: int) -> None:
    """The job ended (finished or cancelled): its callback, if it has one, is due now; the
    first attempt starts in a thread of this process."""
    due = Batch.objects.filter(pk=batch_pk, callback_state="").exclude(callback_url="").update(
        callback_state=State.PENDING, callback_next_at=timezone.now())
    if due:
        threading.Thread(target=_deliver_in_thread, args=(batch_pk,), name=f"batch-callback-{batch_pk}",
                         daemon=True).start()


def _deliver_in_thread(batch_pk: int) -> None:
    try:
        deliver(batch_pk)
    except Exception:  # noqa: BLE001 - the sweep tries again
        log.exception("callback of batch %s failed", batch_pk)
    finally:
        close_old_connections()


def _due(now: datetime) -> Q:
    """Callbacks whose attempt is due, and those whose sender died mid-attempt."""
    return (Q(callback_state=State.PENDING, callback_next_at__lte=now)
            | Q(callback_state=State.SENDING, callback_claimed_at__lt=now - timedelta(seconds=CLAIM_S)))


def due_callbacks(limit: int = 100) -> list[int]:
    return list(Batch.objects.filter(_due(timezone.now())).order_by("callback_next_at")
                .values_list("pk", flat=True)[:limit])


def deliver_due() -> int:
    """Attempt every callback that is due (the sweep); returns how many were delivered."""
    return sum(deliver(pk) == State.DELIVERED for pk in due_callbacks())


def deliver(batch_pk: int) -> str | None:
    """One attempt, if the callback is due and no one else is sending it; returns its new state."""
    now = timezone.now()
    if not Batch.objects.filter(_due(now), pk=batch_pk).update(callback_state=State.SENDING, callback_claimed_at=now):
        return None
    batch = annotated_batches().filter(pk=batch_pk).first()
    if batch is None:
        return None  # deleted meanwhile
    body = json.dumps(describe(batch, with_callback=False), ensure_ascii=False, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json", SIGNATURE_HEADER: signature(batch.callback_secret, body),
               "User-Agent": "ttsplatform-batch-callback/1", "X-TTS-Batch-Id": batch.batch_id}
    address_allowed = (lambda _ip: True) if settings.TTS_CALLBACK_ALLOW_PRIVATE_URLS else is_public_address
    try:
        status = post_checked(batch.callback_url, body, headers, timeout_s=settings.TTS_CALLBACK_TIMEOUT,
                              address_allowed=address_allowed, label=LABEL)
        error = "" if 200 <= status < 300 else f"the receiver answered HTTP {status}"
    except ApiError as exc:
        error = exc.message
    except Exception as exc:  # noqa: BLE001 - whatever broke, the attempt failed and is retried
        error = f"{exc.__class__.__name__}: {exc}"
    attempts = batch.callback_attempts + 1
    if not error:
        state = State.DELIVERED
        Batch.objects.filter(pk=batch_pk).update(callback_state=state, callback_attempts=attempts,
                                                 callback_delivered_at=timezone.now(), callback_error="")
        log.info("callback of batch %s delivered (attempt %d)", batch.batch_id, attempts)
        return state
    ended = batch.finished_at or now
    retry_at = timezone.now() + timedelta(seconds=min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** (attempts - 1)))
    gave_up = retry_at - ended > timedelta(seconds=settings.TTS_CALLBACK_RETRY_SECONDS)
    state = State.FAILED if gave_up else State.PENDING
    Batch.objects.filter(pk=batch_pk).update(callback_state=state, callback_attempts=attempts,
                                             callback_next_at=None if gave_up else retry_at,
                                             callback_error=error[:2000])
    log.warning("callback of batch %s failed (attempt %d: %s)%s", batch.batch_id, attempts, error,
                "; giving up" if gave_up else "")
    return state
