"""Background clone refinement: quick features at once, better ones a little later.

A clone registers its voice with the engine's quick features. When the engine has the
optional ``refine_features`` method and ``TTS_REFINE`` is on, the voice starts in state
"refining" and a refinement is queued: in embedded mode on one background thread with a
bounded queue, in distributed mode as a ``tts.refine`` task on the clone queue. Nothing
waits for it, and synthesis works in both states (it reads features by key and checksum).

When the search ends, the new features are stored as a new blob and swapped in by one
conditional UPDATE: only if the row still points at the features the search started
from (a removed, reloaded or re-cloned voice is left alone and the new blob deleted).
Any failure leaves the quick features and sets the voice "ready".

After a crash, voices can be left "refining" with nobody working on them. Their quick
features are complete and valid, so the recovery is simply to mark them ready (not to
re-queue: a refinement that took the process down would do it again): at start in
embedded mode (one process, so every "refining" voice is orphaned), and, in distributed
mode, at every refine task for voices refining for longer than a task can live.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.db import close_old_connections, transaction
from django.utils import timezone

from synthesis.engines import registry
from synthesis.engines.base import Features, can_refine
from voices import services
from voices.feature_cache import get_feature_cache
from voices.job_backend import job_backend
from voices.models import Voice
from voices.prompt_audio import decode_audio_bytes

log = logging.getLogger(__name__)

#: how often a running search checks that its voice still exists
_STILL_WANTED_EVERY_S = 5.0
#: an old feature blob is deleted this long after the swap, so a stream that read the
#: row just before can still load it
_OLD_BLOB_GRACE_S = 30.0


def enabled(engine: object) -> bool:
    return settings.TTS_REFINE and settings.TTS_REFINE_SECONDS > 0 and can_refine(engine)


def initial_state(engine: object) -> str:
    return Voice.State.REFINING if enabled(engine) else Voice.State.READY


def schedule_new(features_key: str, features_sha256: str) -> None:
    """Queue the refinement of the voice just registered with these features."""
    voice_id = Voice.objects.filter(features_key=features_key).values_list("pk", flat=True).first()
    if voice_id is not None:
        schedule(voice_id, features_key, features_sha256)


def schedule(voice_id: int, features_key: str, features_sha256: str) -> None:
    """Queue a refinement of a voice just registered in state "refining"; never blocks.

    If it cannot be queued, the voice keeps its quick features and becomes ready.
    """
    try:
        if job_backend().queue_refine(voice_id, features_key, features_sha256):
            return
        log.info("refine queue full: voice %s keeps its quick features", voice_id)
    except Exception as exc:  # noqa: BLE001 - broker or store away: the voice must not stay refining
        log.warning("could not queue refinement of voice %s: %s", voice_id, exc)
    mark_ready(voice_id, features_sha256)


# ---------------------------------------------------------------------- the work


def refine_voice(voice_id: int, features_key: str, features_sha256: str) -> str:
    """Refine one voice (blocking) and swap the result in. Returns what happened, for logs and tests."""
    voice = _current(voice_id, features_key, features_sha256)
    if voice is None:
        return "gone"
    try:
        engine = registry.get_loaded_engine()
        if not can_refine(engine):
            mark_ready(voice_id, features_sha256)
            return "unsupported"
        features = services.load_features_by_key(features_key, features_sha256)
        raw = services.get_feature_store().get(voice.prompt_audio_key, voice.prompt_audio_sha256)
        samples, rate, _ = decode_audio_bytes(raw, raw_sample_rate=voice.prompt_sample_rate or 16000,
                                              max_seconds=settings.TTS_PROMPT_MAX_SECONDS)
        refined = engine.refine_features(samples, rate, voice.prompt_text, features, settings.TTS_REFINE_SECONDS,
                                         _still_wanted(voice_id, features_sha256))
    except Exception:
        log.exception("refining voice %s failed; it keeps its quick features", voice_id)
        mark_ready(voice_id, features_sha256)
        return "failed"
    if refined is None:
        mark_ready(voice_id, features_sha256)
        return "unchanged"
    return "swapped" if swap(voice, refined) else "gone"


def _current(voice_id: int, features_key: str, features_sha256: str) -> Voice | None:
    return (Voice.objects.select_related("tenant")
            .filter(pk=voice_id, features_key=features_key, features_sha256=features_sha256).first())


def _still_wanted(voice_id: int, features_sha256: str) -> Callable[[], bool]:
    """A should_stop callback for the engine: true once the voice is gone or has other features."""
    last = [time.monotonic(), False]

    def should_stop() -> bool:
        if job_backend().draining():  # a worker got SIGTERM: end the search early (its best so far is kept)
            return True
        if not last[1] and time.monotonic() - last[0] >= _STILL_WANTED_EVERY_S:
            last[0] = time.monotonic()
            last[1] = not Voice.objects.filter(pk=voice_id, features_sha256=features_sha256).exists()
        return bool(last[1])

    return should_stop


def swap(voice: Voice, refined: Features) -> bool:
    """Store ``refined`` and point ``voice`` at it, unless its row changed meanwhile."""
    blob = services.store_blob(voice.tenant, refined.to_bytes(), "npz")
    metrics = {k: v for k, v in refined.meta.items() if isinstance(v, (int, float, str, dict))}
    try:
        with transaction.atomic():
            updated = Voice.objects.filter(
                pk=voice.pk, features_key=voice.features_key, features_sha256=voice.features_sha256
            ).update(features_key=blob.key, features_sha256=blob.sha256, metrics=metrics, state=Voice.State.READY,
                     updated_at=timezone.now())
    except BaseException:
        services.delete_blobs(blob.key)
        raise
    if not updated:
        log.info("voice %s changed while it was refined; dropping the refined features", voice.pk)
        services.delete_blobs(blob.key)
        return False
    get_feature_cache().put(blob.sha256, refined)
    _delete_later(voice.features_key, voice.features_sha256)
    log.info("voice %s/%s refined: similarity %s -> %s", voice.tenant.slug, voice.prompt_id,
             refined.meta.get("sim_before"), refined.meta.get("sim_after"))
    return True


def _delete_later(key: str, sha256: str) -> None:
    def delete() -> None:
        get_feature_cache().discard(sha256)
        services.delete_blobs(key)

    timer = threading.Timer(_OLD_BLOB_GRACE_S, delete)
    timer.daemon = True
    timer.start()


def mark_ready(voice_id: int, features_sha256: str) -> None:
    """Refining -> ready with the features the voice has (if it still has these)."""
    Voice.objects.filter(pk=voice_id, features_sha256=features_sha256, state=Voice.State.REFINING).update(
        state=Voice.State.READY, updated_at=timezone.now())


def recover_stuck(older_than_s: float = 0.0) -> int:
    """Mark voices "refining" for longer than ``older_than_s`` ready (their quick features stay)."""
    stuck = Voice.objects.filter(state=Voice.State.REFINING)
    if older_than_s > 0:
        stuck = stuck.filter(updated_at__lt=timezone.now() - timedelta(seconds=older_than_s))
    count = stuck.update(state=Voice.State.READY, updated_at=timezone.now())
    if count:
        log.warning("%d voices were left refining (a restart?); they keep their quick features", count)
    return count


def recover_after_restart() -> None:
    """Embedded mode, at start: no refinement survives a restart, so none is running."""
    try:
        recover_stuck()
    except Exception as exc:  # noqa: BLE001 - e.g. not migrated yet: nothing can be refining either
        log.warning("could not check for voices left refining: %s", exc)
    finally:
        close_old_connections()


def stale_after_s() -> float:
    """How long a distributed refinement can take at most: queued until it expires, then its budget."""
    return settings.TTS_REFINE_EXPIRES + 2 * settings.TTS_REFINE_SECONDS + 60
