"""Domain errors of the synthesis app. Each ends a WebSocket request with close code
4000 + its status (see ``ApiError.close_code``)."""
from __future__ import annotations

from core.errors import ApiError


class ProtocolError(ApiError):
    """The client broke the /tts protocol (bad JSON, bad req_params, text out of order)."""

    status = 400


class VoiceNotFound(ApiError):
    status = 404


class ServerBusy(ApiError):
    status = 429


class SynthesisFailed(ApiError):
    status = 500


class IdleTimeout(ApiError):
    status = 408
