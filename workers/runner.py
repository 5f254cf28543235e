"""The one boundary around a synthesis job, in either mode: load the voice, run the job,
and turn any failure into an error event for the client instead of a hang."""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

from core import logs
from core.errors import ApiError
from synthesis.engines.registry import get_loaded_engine
from synthesis.job import JobStats, TextInbox, run_synthesis
from synthesis.request import TtsRequest
from voices.services import load_features_by_key
from workers.sink import ChannelLayerSink

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VoiceRef:
    """What a job needs to find a voice's features in the feature store (and its LRU)."""

    prompt_id: str
    features_key: str
    features_sha256: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def request_as_dict(request: TtsRequest) -> dict[str, Any]:
    return asdict(request)


def run_job(job_id: str, request: TtsRequest, voice: VoiceRef, inbox: TextInbox, sink: ChannelLayerSink) -> JobStats | None:
    with logs.bound(request=job_id, job=job_id):  # the job id is the /tts request id
        return _run_job(job_id, request, voice, inbox, sink)


def _run_job(job_id: str, request: TtsRequest, voice: VoiceRef, inbox: TextInbox,
             sink: ChannelLayerSink) -> JobStats | None:
    try:
        sink.started()
        features = load_features_by_key(voice.features_key, voice.features_sha256)
        return run_synthesis(get_loaded_engine(), features, request, inbox, sink)
    except Exception as exc:
        if inbox.cancelled.is_set():
            return None
        if isinstance(exc, ApiError):
            message = exc.message
        else:
            log.exception("synthesis job %s failed", job_id)
            message = f"synthesis failed: {exc.__class__.__name__}"
        try:
            sink.error(message)
        except Exception:
            log.exception("could not report the failure of job %s to the client", job_id)
        return None
