"""The one error type that crosses an entry point.

Domain modules raise subclasses of :class:`ApiError`; exactly one boundary per entry
point (REST view, WebSocket consumer, job) turns them into
``{"error": true, "message": ...}`` with ``status`` as the HTTP code.
"""
from __future__ import annotations


class ApiError(Exception):
    status: int = 400

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status

    def as_json(self) -> dict[str, object]:
        return {"error": True, "message": self.message}

    @property
    def close_code(self) -> int:
        """WebSocket close code: 4000 + the HTTP status (4400, 4401, 4404, 4429, 4500...).

        Daphne refuses 1011 and friends from a server; 4000-4999 are the application's."""
        return 4000 + self.status if 400 <= self.status < 1000 else 4500


class NotFound(ApiError):
    status = 404


class PayloadTooLarge(ApiError):
    status = 413


class Forbidden(ApiError):
    status = 403


class Unauthorized(ApiError):
    status = 401


class NotReady(ApiError):
    """The service is starting (engine loading, no worker registered yet): 503 with
    ``Retry-After`` on REST, an error frame and close 4503 on /tts -- at once, never a wait."""

    status = 503
    #: seconds a client should wait before retrying (the Retry-After header)
    retry_after = 5
