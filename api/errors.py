"""Errors of the /tts entry point (the protocol, the voice lookup, an idle client). Each
ends a WebSocket request with close code 4000 + its status (see ``ApiError.close_code``);
their class names are the ``type`` label of ``tts_errors_total``."""
from __future__ import annotations

from core.errors import ApiError


class ProtocolError(ApiError):
    """The client broke the /tts protocol (bad JSON, bad req_params, text out of order)."""

    status = 400


class VoiceNotFound(ApiError):
    status = 404


class IdleTimeout(ApiError):
    status = 408
