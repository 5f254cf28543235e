"""Helpers for the admin panel's end-to-end tests: users made with the real management
commands against a running server's database, and an httpx client that logs in as a
browser would (session cookie, CSRF token from the form)."""
from __future__ import annotations

import io
import re
import subprocess
import sys
import wave

import httpx
import numpy as np

from tests.server import REPO, RunningServer

_CSRF_RE = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


def manage(server: RunningServer, *args: str, env: dict[str, str] | None = None) -> str:
    """Run ``manage.py`` against the server's own settings (its TTS_DATA_DIR, database...)."""
    result = subprocess.run([sys.executable, "manage.py", *args], cwd=REPO, env={**server.env, **(env or {})},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def create_admin(server: RunningServer, username: str, password: str) -> None:
    out = manage(server, "create_admin", username, env={"TTS_ADMIN_PASSWORD": password})
    assert f"created admin {username!r}" in out


def create_plain_user(server: RunningServer, username: str, password: str) -> None:
    """A user who may log in to nothing (not staff): made with Django's own shell command."""
    code = ("from django.contrib.auth import get_user_model; "
            f"get_user_model().objects.create_user({username!r}, password={password!r})")
    manage(server, "shell", "-c", code)


def csrf_token(html: str) -> str:
    match = _CSRF_RE.search(html)
    assert match, "no CSRF token on the page"
    return match.group(1)


class AdminClient:
    """An httpx client with an admin session (follows no redirects unless asked)."""

    def __init__(self, server: RunningServer) -> None:
        self.server = server
        self.http = httpx.Client(base_url=server.http, timeout=120)

    def close(self) -> None:
        self.http.close()

    def login(self, username: str, password: str) -> httpx.Response:
        page = self.http.get("/admin/login/", params={"next": "/admin/"})
        assert page.status_code == 200, page.text
        return self.http.post("/admin/login/?next=/admin/", data={
            "csrfmiddlewaretoken": csrf_token(page.text), "username": username, "password": password,
            "next": "/admin/"})

    def get(self, url: str, **kwargs: object) -> httpx.Response:
        return self.http.get(url, **kwargs)

    def post_form(self, page_url: str, data: dict[str, object], files: dict[str, object] | None = None,
                  url: str | None = None) -> httpx.Response:
        """GET ``page_url`` for its CSRF token, then POST ``data`` to ``url`` (default: the same page)."""
        page = self.http.get(page_url)
        assert page.status_code == 200, f"{page_url}: {page.status_code}"
        return self.http.post(url or page_url, data={"csrfmiddlewaretoken": csrf_token(page.text), **data},
                              files=files)


def wav_facts(data: bytes) -> tuple[int, float, float]:
    """(sample rate, seconds, RMS in full-scale units) of a mono 16-bit WAV file."""
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE", data[:16]
    with wave.open(io.BytesIO(data)) as wav:
        assert wav.getnchannels() == 1 and wav.getsampwidth() == 2
        rate = wav.getframerate()
        frames = wav.readframes(wav.getnframes())
    samples = np.frombuffer(frames, dtype="<i2").astype(np.float64) / 32768.0
    rms = float(np.sqrt(np.mean(samples**2))) if samples.size else 0.0
    return rate, samples.size / rate, rms
