"""Errors of the entry points: /tts (the protocol, the voice lookup, an idle client) and the
admin's previews. On /tts each ends the request with close code 4000 + its status (see
``ApiError.close_code``); their class names are the ``type`` label of ``tts_errors_total``."""
from __future__ import annotations

from core.errors import ApiError


class ProtocolError(ApiError):
    """The client broke the /tts protocol (bad JSON, bad req_params, text out of order)."""

    status = 400


class VoiceNotFound(ApiError):
    status = 404


class IdleTimeout(ApiError):
    status = 408


class PreviewTimeout(ApiError):
    status = 504
