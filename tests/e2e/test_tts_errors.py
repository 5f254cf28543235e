"""Bad input on the WebSocket gets a JSON error frame and a close code; the server keeps serving."""
from __future__ import annotations

import base64
import json
import os
import socket
import time

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.e2e.support import stream_tts
from tests.server import RunningServer


def _first_reply(server: RunningServer, *frames: str | bytes) -> tuple[dict, int | None]:
    with connect(server.ws, open_timeout=10) as ws:
        for frame in frames:
            ws.send(frame)
        reply = json.loads(ws.recv(timeout=30))
        try:
            ws.recv(timeout=10)
        except Exception as exc:
            return reply, getattr(getattr(exc, "rcvd", None), "code", None)
    return reply, None


@pytest.mark.parametrize(
    "frames,close_code",
    [
        (["not json"], 4400),
        (["[1,2,3]"], 4400),
        ([json.dumps({"text": "hello", "done": True})], 4400),
        ([json.dumps({"req_params": "wav"})], 4400),
        ([json.dumps({"req_params": {}})], 4400),
        ([json.dumps({"req_params": {"prompt_id": "no-such-voice"}})], 4404),
        ([json.dumps({"req_params": {"prompt_id": "x", "audio_format": "ogg-vorbis"}})], 4400),
        ([json.dumps({"req_params": {"prompt_id": "x", "sample_rate": 12345}})], 4400),
        ([json.dumps({"req_params": {"prompt_id": "x", "sample_rate": "fast"}})], 4400),
        ([json.dumps({"req_params": {"prompt_id": "x", "instruct_text": 5}})], 4400),
        ([b"\x00\x01binary"], 4400),
    ],
)
def test_bad_messages_get_an_error_frame_and_a_close_code(server: RunningServer, frames, close_code: int) -> None:
    reply, code = _first_reply(server, *frames)
    assert reply["error"] is True and reply["message"]
    assert code == close_code


def test_bad_text_message_mid_stream(server: RunningServer, voice: str) -> None:
    reply, code = _first_reply(
        server,
        json.dumps({"req_params": {"prompt_id": voice}}),
        json.dumps({"text": ["not", "a", "string"], "done": False}),
    )
    assert reply["error"] is True and code == 4400


@pytest.mark.parametrize("where", ["text", "prompt_id", "instruct_text", "with req_params"])
def test_text_that_is_not_unicode_is_refused(server: RunningServer, voice: str, where: str) -> None:
    """JSON can carry a lone surrogate (an escaped half of a UTF-16 pair): not text, and
    nothing downstream (Redis, the database, the G2P) can encode it."""
    lone = "\\ud800"  # the six characters backslash-u-d-8-0-0 inside the JSON text
    params = f'{{"prompt_id": "{voice}"}}'
    frames = {
        "text": [f'{{"req_params": {params}}}', f'{{"text": "abc{lone}", "done": true}}'],
        "prompt_id": [f'{{"req_params": {{"prompt_id": "x{lone}"}}}}'],
        "instruct_text": [f'{{"req_params": {{"prompt_id": "{voice}", "instruct_text": "slow{lone}"}}}}'],
        "with req_params": [f'{{"req_params": {params}, "text": "{lone}", "done": true}}'],
    }[where]
    reply, code = _first_reply(server, *frames)
    assert reply["error"] is True and "unicode" in reply["message"].lower(), reply
    assert code == 4400


MIB = 1024 * 1024


@pytest.mark.parametrize("shape", ["one text frame", "fragments", "binary", "JSON mid-request", "many times over"])
def test_a_message_over_the_size_limit_gets_an_error_frame_and_4413(server: RunningServer, voice: str,
                                                                     shape: str) -> None:
    """Daphne's 1 MiB limit used to drop the TCP connection (1006, no reason): now the
    consumer refuses the message like any other, and the server keeps serving."""
    over = {
        "one text frame": ["x" * (MIB + 1)],
        "fragments": [["[" + '"abc", ' * 40000, '"def", ' * 40000, '"ghi", ' * 80000 + "0]"]],
        "binary": [b"\x01" * (2 * MIB)],
        "JSON mid-request": [json.dumps({"req_params": {"prompt_id": voice, "audio_format": "pcm"}}),
                             json.dumps({"text": "好" * MIB, "done": True})],
        "many times over": ["y" * (16 * MIB)],
    }[shape]
    reply, code = _first_reply(server, *over)
    assert reply == {"error": True, "message": reply["message"]} and "at most 1048576 bytes" in reply["message"]
    assert code == 4413
    result = stream_tts(server.ws, {"prompt_id": voice, "audio_format": "pcm"}, ["好的。"])
    assert not result.errors and result.end is not None


@pytest.mark.parametrize("frame", [b"\xed\xa0\x80", b'{"text": "\xff"}', b'{"req_params": {"prompt_id": "\xc3'])
def test_a_text_frame_that_is_not_utf8_gets_an_error_frame_and_4400(server: RunningServer, frame: bytes) -> None:
    """Invalid UTF-8 in a text frame (a raw lone surrogate, a stray byte, a cut sequence)
    used to drop the TCP connection (1006)."""
    with connect(server.ws, open_timeout=10) as ws:
        ws.send(frame, text=True)
        reply = json.loads(ws.recv(timeout=30))
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert reply["error"] is True and "UTF-8" in reply["message"]
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4400


def test_server_still_serves_after_bad_input(server: RunningServer, voice: str) -> None:
    for _ in range(3):
        _first_reply(server, "garbage")
    result = stream_tts(server.ws, {"prompt_id": voice, "audio_format": "pcm"}, ["好的。"])
    assert not result.errors and result.end is not None


def test_client_disconnect_mid_stream_does_not_hurt_others(server: RunningServer, voice: str) -> None:
    with connect(server.ws, open_timeout=10) as ws:
        ws.send(json.dumps({"req_params": {"prompt_id": voice}}))
        ws.send(json.dumps({"text": "这是一段会被中途打断的很长的文本，" * 5, "done": True}))
        json.loads(ws.recv(timeout=60))  # first chunk, then hang up
    result = stream_tts(server.ws, {"prompt_id": voice, "audio_format": "pcm"}, ["还在工作吗？"])
    assert not result.errors and result.end is not None


def test_two_requests_on_one_connection(server: RunningServer, voice: str) -> None:
    with connect(server.ws, open_timeout=10) as ws:
        ids = []
        for text in ["第一个请求。", "Second request."]:
            ws.send(json.dumps({"req_params": {"prompt_id": voice, "audio_format": "pcm"}}))
            ws.send(json.dumps({"text": text, "done": True}))
            while True:
                m = json.loads(ws.recv(timeout=60))
                assert not m["error"], m
                if m["is_end"]:
                    ids.append(m["id"])
                    break
        assert len(set(ids)) == 2


def test_a_client_slow_to_answer_the_close_still_reads_the_error_first(server: RunningServer) -> None:
    """A client that takes 2 s to answer the server's close frame (busy, or far away) finds
    its connection still there: autobahn used to reset it after 1 s, and a client library
    writing its answer into a reset connection may drop the error frame it had just read
    (websockets did, for about 1 in 250 bad messages on a loaded machine)."""
    port = int(server.http.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall((f"GET /tts HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                      f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        received = b""
        while b"\r\n\r\n" not in received:
            received += sock.recv(4096)
        head, received = received.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head
        sock.sendall(_masked_frame(0x1, b"not json"))
        frames: list[tuple[int, bytes]] = []
        while not any(opcode == 0x8 for opcode, _ in frames):
            frame, received = _read_frame(sock, received)
            frames.append(frame)
        assert frames[0][0] == 0x1 and json.loads(frames[0][1])["error"] is True
        assert int.from_bytes(frames[-1][1][:2], "big") == 4400
        time.sleep(2)  # the client answers the close late ...
        sock.setblocking(False)
        with pytest.raises(BlockingIOError):  # ... and the connection is still there: no reset, no EOF
            sock.recv(1, socket.MSG_PEEK)
        sock.setblocking(True)
        sock.sendall(_masked_frame(0x8, frames[-1][1][:2]))


def _masked_frame(opcode: int, payload: bytes) -> bytes:
    mask = os.urandom(4)
    assert len(payload) < 126
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def _read_frame(sock: socket.socket, buffered: bytes) -> tuple[tuple[int, bytes], bytes]:
    """One unmasked server frame (opcode, payload) and what was read beyond it."""
    def need(n: int) -> None:
        nonlocal buffered
        while len(buffered) < n:
            chunk = sock.recv(65536)
            assert chunk, "the server closed the connection mid-frame"
            buffered += chunk

    need(2)
    opcode, length, start = buffered[0] & 0x0F, buffered[1] & 0x7F, 2
    if length == 126:
        need(4)
        length, start = int.from_bytes(buffered[2:4], "big"), 4
    elif length == 127:
        need(10)
        length, start = int.from_bytes(buffered[2:10], "big"), 10
    need(start + length)
    return (opcode, buffered[start:start + length]), buffered[start + length:]
