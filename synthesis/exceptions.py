"""Domain errors of the synthesis app. ``close_code`` is the WebSocket close code used
when the error ends the connection."""
from __future__ import annotations

from ttsplatform.errors import ApiError


class ProtocolError(ApiError):
    """The client broke the /tts protocol (bad JSON, bad req_params, text out of order)."""

    status = 400
    close_code = 4400


class VoiceNotFound(ApiError):
    status = 404
    close_code = 4404


class ServerBusy(ApiError):
    status = 429
    close_code = 4429


class SynthesisFailed(ApiError):
    status = 500
    close_code = 4500  # Daphne (autobahn) refuses 1011 from a server: 4000-4999 are ours


class IdleTimeout(ApiError):
    status = 408
    close_code = 4408
