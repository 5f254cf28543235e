"""Local paths from clients, tried as an attacker would: another tenant's stored prompt audio,
the server's own database, feature store and engine files, probes that try to tell files
apart. A key-holding caller's paths stay inside its own area; nobody reaches the server's data."""
from __future__ import annotations

import base64
import os
import uuid
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import PROMPT_TEXTS
from tests.e2e.test_tenants import make_tenant
from tests.server import ENGINE_DIR, RunningServer, start_server

OUTSIDE = "path is outside the directories this server allows"


def clone_from(server: RunningServer, source: str, headers: dict[str, str] | None = None,
               prompt_id: str | None = None) -> httpx.Response:
    body = {"prompt_audio": source, "prompt_text": PROMPT_TEXTS["jm_kumo"],
            "prompt_id": prompt_id or f"p-{uuid.uuid4().hex[:8]}"}
    return httpx.post(f"{server.http}/clone", json=body, headers=headers or {}, timeout=120)


def test_a_tenant_cannot_clone_from_files_outside_its_area(server: RunningServer, prompt_wavs,
                                                          tmp_path: Path) -> None:
    a, b = make_tenant(server, "pa"), make_tenant(server, "pb")
    wav = prompt_wavs["jm_kumo"]
    # B's own prompt audio, stored by the server; and readable files of every kind outside A's area
    stored = clone_from(server, base64.b64encode(wav).decode(), b.auth, "bob")
    assert stored.status_code == 200, stored.text
    outside = tmp_path / "voice.wav"
    outside.write_bytes(wav)
    probes = [str(p) for p in (server.data_dir / "voices").rglob("*.audio")]  # local store (embedded)
    probes += [str(outside), "/etc/shadow", "/etc/passwd", "/etc", "/nonexistent/x.wav",
               f"../{b.slug}/x.wav", str(server.data_dir / "tenant-caches" / b.slug)]
    answers = {p: clone_from(server, p, a.auth) for p in probes}
    for path, response in answers.items():  # one answer for all: nothing tells them apart
        assert (response.status_code, response.json()["message"]) == (403, OUTSIDE), (path, response.text)
    # inside its own area, a path works (relative ones from the area's root)
    own = server.data_dir / "tenant-caches" / a.slug / "mine.wav"
    own.write_bytes(wav)
    for source in (str(own), "./mine.wav"):
        response = clone_from(server, source, a.auth)
        assert response.status_code == 200 and response.json()["existed"] is False, response.text


def test_nobody_reaches_the_server_data(server: RunningServer, prompt_wavs, tmp_path: Path) -> None:
    """Open mode lets a client read any file the process may, except the server's own data."""
    private = [server.data_dir / "db.sqlite3", server.data_dir / "db.sqlite3-wal", server.data_dir,
               server.data_dir / "voices", ENGINE_DIR / "models", *ENGINE_DIR.glob("models/*.onnx")]
    for path in private:
        response = clone_from(server, str(path))
        assert (response.status_code, response.json()["message"]) == (403, OUTSIDE), (path, response.text)
    for body, route in (({"cache_dir": str(server.data_dir)}, "save"), ({"cache_dir": str(ENGINE_DIR)}, "save"),
                        ({"cache_path": str(server.data_dir / "db.sqlite3")}, "load")):
        response = httpx.post(f"{server.http}/cache/{route}", json=body, timeout=60)
        assert (response.status_code, response.json()["message"]) == (403, OUTSIDE), (body, response.text)
    assert not (server.data_dir / "tone_cache.ttsc").exists()
    # a running server's database stays whole: a management command after the probes
    # (it used to drop SQLite's -wal/-shm under the server), then every endpoint still answers
    server.manage("showmigrations", "voices")
    assert httpx.get(f"{server.http}/speakers", timeout=10).status_code == 200
    assert server.health()["database"] is True
    # a client-made path is still fine in open mode
    mine = tmp_path / "prompt.wav"
    mine.write_bytes(prompt_wavs["jm_kumo"])
    assert clone_from(server, str(mine)).status_code == 200


def test_a_hard_link_to_the_database_is_refused(server: RunningServer, tmp_path: Path) -> None:
    database = server.data_dir / "db.sqlite3"
    if server.mode != "embedded":
        pytest.skip("only embedded mode keeps its database in a file")
    link = tmp_path / "innocent.wav"
    os.link(database, link)
    response = clone_from(server, str(link))
    assert (response.status_code, response.json()["message"]) == (403, OUTSIDE), response.text


def test_health_fails_when_the_database_does(tmp_path_factory: pytest.TempPathFactory) -> None:
    running = start_server(tmp_path_factory.mktemp("broken-db"))
    try:
        assert running.health()["database"] is True
        database = running.data_dir / "db.sqlite3"
        database.write_bytes(b"this is not a database" * 1000)  # what a corrupted file reads as
        response = httpx.get(f"{running.http}/health", timeout=10)
        assert response.status_code == 503 and response.json()["database"] is False, response.text
    finally:
        running.stop()
