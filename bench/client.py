"""The benchmark's WebSocket client: N concurrent streams on one asyncio loop, timed per chunk.

Two ways of sending a request's text:
- ``stream``: word by word, as an LLM would (English words, one or two Chinese characters,
  punctuation attached), a piece every 30-50 ms (seeded), then ``done``. The client runs
  the server's own ClauseSegmenter over what it sends, so it knows when its first clause
  was complete on the server's side too: TTFA is counted from that moment;
- ``burst``: the whole text and ``done`` in one message: TTFA is counted from ``done``.

Audio is requested as pcm (s16le, 24 kHz), so each chunk's duration is exact. A playback
model per client gives underruns: playback starts when the first chunk arrives and plays
everything received back to back; a chunk that arrives after the audio before it has
finished playing is an underrun (the player stalls until it arrives, then goes on).
"""
from __future__ import annotations

import asyncio
import base64
import json
import random
import re
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from synthesis.text.segmenter import ClauseSegmenter

SAMPLE_RATE = 24000
SCENARIOS = ("stream", "burst")

#: an English word (or number), or one or two CJK characters, or any other character;
#: leading whitespace and trailing punctuation stay with it
_PIECE = re.compile(r"\s*(?:[A-Za-z0-9'’\-]+|[\u3400-\u4dbf\u4e00-\u9fff]{1,2}|.)[^\w\s]*", re.S)


def llm_pieces(text: str) -> list[str]:
    pieces = _PIECE.findall(text)
    assert "".join(pieces) == text, "pieces must join back to the text"
    return pieces


def first_clause_piece(pieces: list[str]) -> int:
    """Index of the piece whose sending completes the first clause (len(pieces) = only at done)."""
    segmenter = ClauseSegmenter()
    for i, piece in enumerate(pieces):
        if segmenter.feed(piece):
            return i
    return len(pieces)


@dataclass
class StreamRecord:
    scenario: str
    text_id: str
    level: int
    client: int
    connect_s: float = 0.0
    #: time.perf_counter() when the first text message was sent (only to line up concurrent streams)
    started: float = 0.0
    #: seconds from the first text message sent: the first clause complete, done sent, the end message
    first_clause_at: float | None = None
    done_at: float | None = None
    end_at: float | None = None
    #: per audio chunk: arrival (seconds from the first text message) and decoded duration (seconds)
    arrivals: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    error: str | None = None
    #: the audio itself (s16le at SAMPLE_RATE), only when run_streams(keep_audio=True)
    pcm: bytearray | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.error is None and self.end_at is not None and bool(self.arrivals)

    def metrics(self) -> dict[str, Any]:
        """Derived numbers (seconds) of one finished stream."""
        out: dict[str, Any] = {"ok": self.ok, "chunks": len(self.arrivals), "audio_s": sum(self.seconds)}
        if not self.ok:
            return out
        first = self.arrivals[0]
        out["ttfa_clause_s"] = first - (self.first_clause_at or 0.0)
        # From done only where done came before the first audio (always so in a burst).
        out["ttfa_done_s"] = first - self.done_at if self.done_at is not None and first >= self.done_at else None
        out["end_after_done_s"] = self.end_at - (self.done_at or 0.0)
        out["stream_s"] = self.end_at
        out["rtf"] = self.end_at / out["audio_s"] if out["audio_s"] else None
        out["gaps_s"] = [b - a for a, b in zip(self.arrivals, self.arrivals[1:], strict=False)]
        out.update(playback(self.arrivals, self.seconds))
        return out

    def as_dict(self) -> dict[str, Any]:
        row = asdict(self)
        row.pop("pcm")
        row["arrivals"] = [round(x, 4) for x in self.arrivals]
        row["seconds"] = [round(x, 4) for x in self.seconds]
        return row


def playback(arrivals: list[float], seconds: list[float]) -> dict[str, float | int]:
    """Underruns of a player that starts at the first chunk and plays chunks back to back."""
    clock = None  # when everything received so far has finished playing
    underruns = 0
    stall = 0.0
    headroom = float("inf")  # the least audio left to play when a chunk arrived
    for arrival, duration in zip(arrivals, seconds, strict=True):
        if clock is None:
            clock = arrival + duration
            continue
        left = clock - arrival
        headroom = min(headroom, left)
        if left < 0:
            underruns += 1
            stall += -left
            clock = arrival
        clock += duration
    return {"underruns": underruns, "stall_s": stall, "min_headroom_s": headroom if headroom != float("inf") else None}


async def _drive(ws: Any, record: StreamRecord, prompt_id: str, text: str, rng: random.Random,
                 piece_delay: tuple[float, float], timeout: float) -> None:
    await ws.send(json.dumps({"req_params": {"prompt_id": prompt_id, "audio_format": "pcm",
                                             "sample_rate": SAMPLE_RATE}}))
    start = record.started = time.perf_counter()

    async def receive() -> None:
        while True:
            raw = await ws.recv()
            now = time.perf_counter() - start
            message = json.loads(raw)
            if message.get("error"):
                record.error = str(message.get("message"))
                return
            if message.get("is_end"):
                record.end_at = now
                return
            data = base64.b64decode(message["data"])
            record.arrivals.append(now)
            record.seconds.append(len(data) / 2 / SAMPLE_RATE)
            if record.pcm is not None:
                record.pcm += data

    receiver = asyncio.create_task(receive())
    try:
        if record.scenario == "burst":
            await ws.send(json.dumps({"text": text, "done": True}, ensure_ascii=False))
            record.first_clause_at = record.done_at = time.perf_counter() - start
        else:
            pieces = llm_pieces(text)
            first = first_clause_piece(pieces)
            for i, piece in enumerate(pieces):
                if receiver.done():
                    break
                await ws.send(json.dumps({"text": piece, "done": False}, ensure_ascii=False))
                if i == first:
                    record.first_clause_at = time.perf_counter() - start
                if i < len(pieces) - 1:
                    await asyncio.sleep(rng.uniform(*piece_delay))
            await ws.send(json.dumps({"text": "", "done": True}))
            record.done_at = time.perf_counter() - start
            if record.first_clause_at is None:
                record.first_clause_at = record.done_at
        await asyncio.wait_for(receiver, timeout)
    except Exception as exc:  # closed by the server, timed out
        if record.error is None:
            record.error = f"{exc.__class__.__name__}: {exc}"
    finally:
        receiver.cancel()


async def run_streams(ws_url: str, prompt_id: str, texts: list[tuple[str, str]], scenario: str, level: int,
                      seed: int, piece_delay: tuple[float, float] = (0.03, 0.05),
                      timeout: float = 600.0, keep_audio: bool = False) -> list[StreamRecord]:
    """``level`` concurrent requests: all connect first, then all start sending at once.

    With ``keep_audio`` each record also keeps the audio it received (``record.pcm``)."""
    from websockets.asyncio.client import connect

    async def open_one() -> tuple[Any, float]:
        t = time.perf_counter()
        ws = await connect(ws_url, max_size=None, open_timeout=60, close_timeout=5, ping_interval=None)
        return ws, time.perf_counter() - t

    records = [StreamRecord(scenario, texts[(seed + i) % len(texts)][0], level, i,
                            pcm=bytearray() if keep_audio else None) for i in range(level)]
    opened = await asyncio.gather(*(open_one() for _ in range(level)), return_exceptions=True)
    try:
        jobs = []
        for i, (record, item) in enumerate(zip(records, opened, strict=True)):
            if isinstance(item, BaseException):
                record.error = f"connect: {item.__class__.__name__}: {item}"
                continue
            ws, record.connect_s = item
            text = texts[(seed + i) % len(texts)][1]
            jobs.append(_drive(ws, record, prompt_id, text, random.Random(seed * 1000 + i), piece_delay, timeout))
        await asyncio.gather(*jobs)
    finally:
        await asyncio.gather(*(item[0].close() for item in opened if not isinstance(item, BaseException)),
                             return_exceptions=True)
    return records
