"""Where Daphne's own behaviour would break the public API, and what is done instead.

Installed by ttsplatform/asgi.py when Daphne imports the application, which it does
before it builds its server, so ``make run``, ``make run-distributed`` and the tests all
get them without extra command-line flags.

- A WebSocket message over Daphne's size limit (``--websocket_max_message_size``, 1 MiB
  by default) or a text frame that is not UTF-8 makes autobahn drop the TCP connection:
  the client sees 1006 and no reason. Instead, autobahn keeps nothing more of that
  client's messages (the rest is read and discarded as it arrives, so memory stays
  bounded by the limit), and the application gets an event, :data:`TOO_LARGE` or
  :data:`INVALID_TEXT`, which the /tts consumer answers like any bad message: one JSON
  error frame, then close 4413 or 4400.
- autobahn drops the TCP connection 1 s after the server's close frame when the client
  has not answered it. A client busy or far away for longer then writes its answer into
  a reset connection, and a client library may lose the error frame it had received
  with the close (websockets does: "if send_data raised an exception, then events are
  lost"). The server waits :data:`CLOSE_HANDSHAKE_TIMEOUT_S` instead.
- Daphne's access log is no log record: it writes each HTTP request's URL, query string
  included, straight to stdout. Its lines go through :func:`core.logs.redact_secrets`
  like every log record does.
"""
from __future__ import annotations

from typing import Any

from daphne import access, ws_protocol

from core.logs import redact_secrets

#: ASGI event types for the application (channels calls ``websocket_too_large`` and
#: ``websocket_invalid_text`` on the consumer); both carry ``limit`` or ``reason``.
TOO_LARGE = "websocket.too_large"
INVALID_TEXT = "websocket.invalid_text"

#: seconds the server waits for the client's answer to its close frame (autobahn: 1)
CLOSE_HANDSHAKE_TIMEOUT_S = 5


def install() -> None:
    """Hook Daphne's WebSocket protocol and access log (idempotent)."""
    ws_protocol.WebSocketFactory.protocol = RefusingWebSocketProtocol
    if not getattr(access.AccessLogGenerator.write_entry, "redacts", False):
        access.AccessLogGenerator.write_entry = _redacting(access.AccessLogGenerator.write_entry)


def _redacting(write_entry: Any) -> Any:
    def write_redacted(self: Any, host: Any, date: Any, request: str, *args: Any, **kwargs: Any) -> None:
        write_entry(self, host, date, redact_secrets(request), *args, **kwargs)

    write_redacted.redacts = True  # type: ignore[attr-defined]
    return write_redacted


class RefusingWebSocketProtocol(ws_protocol.WebSocketProtocol):
    """Daphne's protocol, but a message it cannot take is the application's to refuse."""

    refused = False
    closeHandshakeTimeout = CLOSE_HANDSHAKE_TIMEOUT_S  # autobahn takes a protocol's own value first

    def _refuse(self, event: dict[str, Any]) -> bool:
        """Tell the application, once; False where there is none to tell (autobahn decides)."""
        if self.refused:
            return True
        queue = getattr(self, "application_queue", None)
        if queue is None or self.muted or self.state != self.STATE_OPEN:
            return False
        self.refused = True
        # autobahn buffers and delivers nothing more of this client's data frames; it still
        # reads them (and answers the closing handshake), so the client hears the reply.
        self.failedByMe = True
        self.utf8validateIncomingCurrentMessage = False
        queue.put_nowait(event)
        return True

    def _max_message_size_exceeded(self, msg_size: int, max_msg_size: int, reason: str) -> None:
        if not self._refuse({"type": TOO_LARGE, "limit": max_msg_size}):
            super()._max_message_size_exceeded(msg_size, max_msg_size, reason)

    def _invalid_payload(self, reason: str) -> bool:
        in_data_frame = self.current_frame is not None and self.current_frame.opcode <= 7
        if in_data_frame and self._refuse({"type": INVALID_TEXT, "reason": reason}):
            return False  # go on reading (and discarding) what the client sends
        return super()._invalid_payload(reason)
