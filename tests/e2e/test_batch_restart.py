"""An embedded server stopped in the middle of a batch job finishes it after it starts again:
the items it was running go back to pending, nothing is counted twice, every file is whole."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import PROMPT_TEXTS
from tests.e2e.support import decode_audio
from tests.e2e.test_batches import LONG_EN, TERMINAL, put, wait_for
from tests.e2e.test_tenants import clone
from tests.server import RunningServer, start_server


@pytest.fixture()
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield tmp_path_factory.mktemp("batch-restart")


def test_a_job_interrupted_by_a_stop_completes_after_the_restart(data_dir: Path,
                                                                   prompt_wavs: dict[str, bytes]) -> None:
    server: RunningServer = start_server(data_dir, mode="embedded")
    try:
        assert clone(server, None, "narrator", prompt_wavs["jm_kumo"], PROMPT_TEXTS["jm_kumo"]).status_code == 200
        inputs = [{"text": f"Part {i}. {LONG_EN}"} for i in range(4)]
        assert put(server, "interrupted", {"prompt_id": "narrator", "inputs": inputs, "audio_format": "wav"}
                   ).status_code == 201
        wait_for(server, "interrupted", lambda j: j["counts"]["succeeded"] >= 1 and j["counts"]["running"] == 1)
    finally:
        server.stop()  # mid-item: one item is running, the others pending

    server = start_server(data_dir, mode="embedded")
    try:
        final = wait_for(server, "interrupted", lambda j: j["state"] in TERMINAL)
        assert final["state"] == "succeeded", final
        for item in final["items"]:
            data = httpx.get(f"{server.http}{item['url']}", timeout=30).content
            audio, rate = decode_audio(data, "wav", 24000)
            assert data[:4] == b"RIFF" and abs(len(audio) / rate - item["seconds"]) < 0.05
        usage = httpx.get(f"{server.http}/usage", timeout=30).json()["total"]
        assert usage["characters"] == final["characters"]  # the interrupted item counted once, when it succeeded
        assert usage["audio_seconds"] == pytest.approx(final["audio_seconds"], abs=0.01)
        assert "interrupted by the last stop: 1" in server.log_tail(20000)
    finally:
        server.stop()
