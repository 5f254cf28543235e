"""Errors of running a job (a full pool or queue, a job that failed), raised here and in
the entry points that wait on a job; their class names are the ``type`` label of
``tts_errors_total``."""
from __future__ import annotations

from core.errors import ApiError


class ServerBusy(ApiError):
    status = 429


class SynthesisFailed(ApiError):
    status = 500
