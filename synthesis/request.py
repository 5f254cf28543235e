"""What one /tts request asks the pipeline for, once the wire protocol has checked it.

Its own module, below the wire protocol (api/protocol.py), so the job loop and the
workers can carry a request without depending on how clients spell it.
"""
from __future__ import annotations

from dataclasses import dataclass

DEFAULT_FORMAT = "wav"
DEFAULT_SAMPLE_RATE = 24000
#: the longest ``instruct_text`` a request may carry (/tts, batch jobs)
MAX_INSTRUCT_CHARS = 500


@dataclass(frozen=True)
class TtsRequest:
    prompt_id: str
    audio_format: str = DEFAULT_FORMAT
    sample_rate: int = DEFAULT_SAMPLE_RATE
    instruct_text: str | None = None
    chunk_mode: str = "file"
