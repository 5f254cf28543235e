"""The admin panel in a real browser: headless Chromium (Debian's package, driven by
Playwright) against a real embedded server.

An operator logs in, clones a voice from an uploaded recording, listens to the prompt
and to a synthesized preview, and removes the voice again. Screenshots of every step go
to test-artifacts/admin/ at the repository root.

Chromium comes from Debian (scripts/ensure_chromium.sh installs it); Playwright's own
browser download is never used.
"""
from __future__ import annotations

import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.admin_support import create_admin, wav_facts
from tests.e2e.conftest import PROMPT_TEXTS
from tests.e2e.support import stream_tts
from tests.server import REPO, RunningServer, start_server

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = REPO / "test-artifacts" / "admin"
ADMIN = "operator"
VOICE = "browser-voice"
PREVIEW_TEXT = "Hello from the admin panel. 你好，这是一次试听。"


@pytest.fixture(scope="module")
def admin_password() -> str:
    return secrets.token_urlsafe(18)


@pytest.fixture(scope="module")
def admin_server(tmp_path_factory: pytest.TempPathFactory, admin_password: str) -> Iterator[RunningServer]:
    server = start_server(tmp_path_factory.mktemp("admin-browser"), mode="embedded",
                          extra_env={"TTS_ADMIN_PASSWORD": admin_password})
    try:
        create_admin(server, ADMIN, admin_password)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/ensure_chromium.sh (installs Debian's chromium)")
    from playwright.sync_api import sync_playwright

    shutil.rmtree(ARTIFACTS, ignore_errors=True)  # this run's screenshots only
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def shot(page: object, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def speakers(server: RunningServer) -> list[str]:
    response = httpx.get(f"{server.http}/speakers", timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def test_operator_clones_listens_and_removes_a_voice(admin_server: RunningServer, admin_password: str,
                                                      browser: object, prompt_wavs: dict[str, bytes],
                                                      tmp_path: Path) -> None:
    server = admin_server
    prompt_file = tmp_path / "prompt.wav"
    prompt_file.write_bytes(prompt_wavs["jm_kumo"])

    context = browser.new_context(viewport={"width": 1366, "height": 768}, base_url=server.http)
    page = context.new_page()
    page.set_default_timeout(30_000)
    console_errors: list[str] = []
    page.on("console", lambda message: console_errors.append(f"{message.text} {message.location}")
            if message.type == "error" else None)
    try:
        # --- log in -----------------------------------------------------------------
        page.goto("/admin/")
        assert "/admin/login/" in page.url
        assert "TTS platform admin" in page.inner_text("#site-name")
        shot(page, "01-login")
        page.fill("#id_username", ADMIN)
        page.fill("#id_password", admin_password)
        page.click("input[type=submit]")
        page.wait_for_url("**/admin/")
        assert page.title().endswith("TTS platform admin")
        assert page.locator(".tts-card").count() >= 6
        # The platform's stylesheet is applied (not only linked).
        header_bg = page.eval_on_selector("#header", "el => getComputedStyle(el).borderBottomStyle")
        assert header_bg == "solid"
        shot(page, "02-dashboard")

        # --- clone a voice from an uploaded recording ---------------------------------
        page.click("text=Clone a voice")
        page.wait_for_url("**/admin/voices/voice/add/")
        page.fill("#id_prompt_id", VOICE)
        page.set_input_files("#id_prompt_audio", str(prompt_file))
        page.fill("#id_prompt_text", PROMPT_TEXTS["jm_kumo"])
        page.fill("#id_provenance_note", "Synthetic speaker made by the test suite; no consent needed.")
        shot(page, "03-clone-form")
        page.click("input[name=_save]")
        page.wait_for_url("**/admin/voices/voice/*/change/", timeout=120_000)
        assert "Cloned voice" in page.inner_text(".messagelist")
        assert VOICE in speakers(server)

        # --- the stored prompt plays -------------------------------------------------------
        page.wait_for_function(
            "() => { const a = document.querySelector('#tts-prompt audio');"
            " return a && a.readyState >= 1 && a.duration > 1; }")
        prompt_url = page.get_attribute("#tts-prompt audio", "src")
        prompt = page.request.get(prompt_url)
        assert prompt.status == 200 and prompt.headers["content-type"] == "audio/wav"
        assert prompt.body() == prompt_wavs["jm_kumo"]  # exactly what was uploaded
        shot(page, "04-voice-page")

        # --- the synthesized preview plays ---------------------------------------------------
        page.fill("#tts-preview-text", PREVIEW_TEXT)
        page.click("#tts-preview-button")
        page.wait_for_function(
            "() => document.querySelector('#tts-preview-status').textContent.startsWith('Ready')",
            timeout=120_000)
        state = page.evaluate(
            "() => { const a = document.querySelector('#tts-preview-audio');"
            " return {readyState: a.readyState, duration: a.duration, src: a.src}; }")
        assert state["src"].startswith("blob:")
        assert state["readyState"] >= 2 or state["duration"] > 0, state
        assert state["duration"] > 1.0, state
        shot(page, "05-preview")

        # The preview URL itself answers WAV with real speech (fetched with the page's session).
        preview_url = page.get_attribute("#tts-preview", "data-url")
        preview = page.request.get(preview_url, params={"text": PREVIEW_TEXT}, timeout=120_000)
        assert preview.status == 200, preview.text()
        assert preview.headers["content-type"] == "audio/wav"
        rate, seconds, rms = wav_facts(preview.body())
        assert rate == 24000
        assert 1.5 < seconds < 20, seconds
        assert rms > 0.01, rms  # speech, not silence
        # Without a session the audio endpoints are closed.
        anonymous = httpx.get(f"{server.http}{preview_url}", timeout=10)
        assert anonymous.status_code == 302 and "/admin/login/" in anonymous.headers["location"]

        # --- a stream in that voice shows up in the usage list ---------------------------------
        voice_page = page.url
        result = stream_tts(server.ws, {"prompt_id": VOICE, "audio_format": "pcm", "sample_rate": 24000,
                                        "chunk_mode": "stream"}, ["Counting this stream."])
        assert result.end is not None and not result.errors, result.messages[-1:]
        for _ in range(20):  # the stream is metered right after its last message
            page.goto("/admin/tenants/usageday/")
            if page.locator("#result_list").count():
                break
            page.wait_for_timeout(250)
        totals = page.inner_text(".tts-totals")
        # two previews (the page's and the URL fetched above) are metered as streams too, and the clone
        assert "3 streams" in totals and "1 clones" in totals, totals
        shot(page, "06-usage")
        page.goto(voice_page)

        # --- remove the voice ------------------------------------------------------------------
        page.click("a.deletelink")
        page.wait_for_url("**/delete/")
        shot(page, "07-delete-confirm")
        page.click("input[type=submit]")
        page.wait_for_url("**/admin/voices/voice/")
        assert "deleted successfully" in page.inner_text(".messagelist")
        shot(page, "08-voice-removed")
        assert VOICE not in speakers(server)
        # Its stored features and prompt audio went with it.
        assert not [p for p in (server.data_dir / "voices").rglob("*") if p.is_file()]

        # --- the audit log shows both, by this operator ------------------------------------------
        page.goto("/admin/tenants/auditevent/")
        rows = page.inner_text("#result_list")
        assert f"admin:{ADMIN}" in rows
        assert "cloned" in rows and "removed" in rows
        shot(page, "09-audit-log")
        assert not console_errors, console_errors
    finally:
        context.close()


def test_operator_creates_and_revokes_an_api_key(admin_server: RunningServer, admin_password: str,
                                                 browser: object) -> None:
    server = admin_server
    context = browser.new_context(viewport={"width": 1366, "height": 768}, base_url=server.http)
    page = context.new_page()
    page.set_default_timeout(30_000)
    try:
        page.goto("/admin/login/")
        page.fill("#id_username", ADMIN)
        page.fill("#id_password", admin_password)
        page.click("input[type=submit]")
        page.wait_for_url("**/admin/")

        # The tenant page: its quota inline and links to what belongs to it.
        speakers(server)  # open mode: makes sure the default tenant exists
        page.goto("/admin/voices/tenant/")
        page.click("text=default")
        page.fill("#id_quota-0-max_concurrent_streams", "4")
        shot(page, "10-tenant-quota")
        page.click("input[name=_continue]")
        page.wait_for_selector(".messagelist .success")
        assert page.input_value("#id_quota-0-max_concurrent_streams") == "4"

        # Create a key: scopes as checkboxes; the key is on the next page, once.
        page.click("text=create an API key")
        page.wait_for_url("**/admin/tenants/apikey/add/**")
        page.fill("#id_name", "browser test")
        page.check("input[name=scopes][value=clone]")
        shot(page, "11-key-form")
        page.click("input[name=_save]")
        key = page.inner_text("#tts-new-key").strip()
        assert key.startswith("tts_")
        shot(page, "12-key-shown-once")
        answer = httpx.get(f"{server.http}/speakers", headers={"Authorization": f"Bearer {key}"}, timeout=10)
        assert answer.status_code == 200

        page.click("text=Back to API keys")
        page.wait_for_url("**/admin/tenants/apikey/")
        assert key not in page.content()
        page.check("#result_list input[name=_selected_action]")
        page.select_option("select[name=action]", "revoke_selected")
        page.click("button[name=index]")
        page.wait_for_selector(".messagelist .success")
        assert "Revoked 1 API key." in page.inner_text(".messagelist")
        assert "revoked" in page.inner_text("#result_list")
        shot(page, "13-key-revoked")
        refused = httpx.get(f"{server.http}/speakers", headers={"Authorization": f"Bearer {key}"}, timeout=10)
        assert refused.status_code == 401
    finally:
        context.close()
