"""The admin panel over plain HTTP, in both modes: who gets in, tenants with their quota,
API keys (shown once, never stored readable, revocable), read-only usage and audit,
and voices (clone from an upload, listen, preview, provenance note, remove).

Everything goes through the real server's forms with a real session and CSRF token,
and is checked through the public API where it has an effect there.
"""
from __future__ import annotations

import base64
import hashlib
import re
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import numpy as np
import pytest

from tests.e2e.admin_support import AdminClient, create_admin, create_plain_user, csrf_token, wav_facts
from tests.e2e.admin_support import manage as admin_support_manage
from tests.e2e.conftest import PROMPT_TEXTS
from tests.server import RunningServer

KEY_RE = re.compile(r'<code id="tts-new-key">(tts_[a-z0-9]{8,16}_[A-Za-z0-9_-]{20,100})</code>')
ALL_SCOPES = ["synthesize", "clone", "manage-voices", "manage-caches"]


@dataclass
class Operator:
    username: str
    password: str


@pytest.fixture(scope="module")
def operator(server: RunningServer) -> Operator:
    """An admin of this server (the session's servers are shared: a fresh name each time)."""
    who = Operator(f"ops-{uuid.uuid4().hex[:8]}", secrets.token_urlsafe(16))
    create_admin(server, who.username, who.password)
    return who


@pytest.fixture
def admin(server: RunningServer, operator: Operator) -> Iterator[AdminClient]:
    client = AdminClient(server)
    response = client.login(operator.username, operator.password)
    assert response.status_code == 302 and response.headers["location"] == "/admin/", response.text[-2000:]
    yield client
    client.close()


def add_tenant(admin: AdminClient, quota: dict[str, str] | None = None) -> tuple[int, str]:
    """A tenant made with the admin's add form (quota inline); returns (pk, slug)."""
    slug = f"adm-{uuid.uuid4().hex[:8]}"
    quota_fields = {f"quota-0-{name}": value for name, value in (quota or {}).items()}
    response = admin.post_form("/admin/voices/tenant/add/", {
        "name": f"Admin test {slug}", "slug": slug,
        "quota-TOTAL_FORMS": "1", "quota-INITIAL_FORMS": "0", "quota-MIN_NUM_FORMS": "0", "quota-MAX_NUM_FORMS": "1",
        "quota-0-id": "", "quota-0-tenant": "", **quota_fields, "_continue": "1"})
    assert response.status_code == 302, response.text[-3000:]
    match = re.fullmatch(r"/admin/voices/tenant/(\d+)/change/", response.headers["location"])
    assert match, response.headers["location"]
    return int(match.group(1)), slug


def add_key(admin: AdminClient, tenant_pk: int, scopes: list[str], **fields: str) -> httpx.Response:
    return admin.post_form("/admin/tenants/apikey/add/", {
        "tenant": str(tenant_pk), "name": fields.get("name", "http test"), "scopes": scopes,
        "expires_at_0": fields.get("expires_date", ""), "expires_at_1": fields.get("expires_time", "")})


def new_key(admin: AdminClient, tenant_pk: int, scopes: list[str] = ALL_SCOPES) -> str:
    response = add_key(admin, tenant_pk, scopes)
    assert response.status_code == 200, response.text[-3000:]
    keys = KEY_RE.findall(response.text)
    assert len(keys) == 1, "the new key must be on the page, once"
    return keys[0]


def api_speakers(server: RunningServer, key: str) -> httpx.Response:
    return httpx.get(f"{server.http}/speakers", headers={"Authorization": f"Bearer {key}"}, timeout=10)


# --- who gets in ---------------------------------------------------------------------------


def test_only_staff_get_in(server: RunningServer) -> None:
    anonymous = httpx.get(f"{server.http}/admin/", timeout=10)
    assert anonymous.status_code == 302 and anonymous.headers["location"].startswith("/admin/login/")
    for path in ("/admin/voices/voice/1/preview.wav", "/admin/voices/voice/1/prompt-audio/",
                 "/admin/tenants/apikey/add/"):
        response = httpx.get(f"{server.http}{path}", timeout=10)
        assert response.status_code == 302 and "/admin/login/" in response.headers["location"], path

    username, password = f"user-{uuid.uuid4().hex[:8]}", secrets.token_urlsafe(16)
    create_plain_user(server, username, password)
    client = AdminClient(server)
    try:
        refused = client.login(username, password)
        assert refused.status_code == 200
        assert "correct username and password for a staff account" in refused.text
        assert client.get("/admin/").status_code == 302
        assert client.get("/admin/tenants/apikey/").status_code == 302
    finally:
        client.close()


# --- tenants, quotas, keys, audit ----------------------------------------------------------------


def test_tenant_with_quota_and_links(server: RunningServer, admin: AdminClient) -> None:
    pk, slug = add_tenant(admin, {"max_concurrent_streams": "3", "max_voices": ""})
    page = admin.get(f"/admin/voices/tenant/{pk}/change/")
    assert page.status_code == 200
    assert 'name="quota-0-max_concurrent_streams" value="3"' in page.text
    for link in (f"/admin/voices/voice/?tenant__id__exact={pk}", f"/admin/tenants/apikey/?tenant__id__exact={pk}",
                 f"/admin/tenants/usageday/?tenant__id__exact={pk}",
                 f"/admin/tenants/auditevent/?tenant__id__exact={pk}", f"/admin/tenants/apikey/add/?tenant={pk}"):
        assert link.replace("&", "&amp;") in page.text, link

    # Edit the quota in place: the inline form now has the saved row.
    quota_id = re.search(r'name="quota-0-id" value="(\d+)"', page.text).group(1)
    response = admin.post_form(f"/admin/voices/tenant/{pk}/change/", {
        "name": f"Admin test {slug}",
        "quota-TOTAL_FORMS": "1", "quota-INITIAL_FORMS": "1", "quota-MIN_NUM_FORMS": "0", "quota-MAX_NUM_FORMS": "1",
        "quota-0-id": quota_id, "quota-0-tenant": str(pk), "quota-0-max_concurrent_streams": "2",
        "quota-0-max_voices": "7", "_save": "1"})
    assert response.status_code == 302, response.text[-3000:]
    quotas = admin.get("/admin/tenants/quota/", params={"q": slug})
    assert re.search(r'name="form-0-max_voices" value="7"', quotas.text)
    assert re.search(r'name="form-0-max_concurrent_streams" value="2"', quotas.text)
    # The index counts it.
    assert "tenants" in admin.get("/admin/").text


def test_api_key_shown_once_works_and_revokes(server: RunningServer, admin: AdminClient,
                                              operator: Operator) -> None:
    pk, slug = add_tenant(admin)
    key = new_key(admin, pk, ["synthesize", "clone"])
    prefix, secret = key.split("_")[1], key.split("_", 2)[2]

    # The key is a real key of this tenant.
    answer = api_speakers(server, key)
    assert answer.status_code == 200 and answer.json() == []

    # ... and it is never shown again, nor its hash.
    digest = hashlib.sha256(key.encode()).hexdigest()
    listing = admin.get("/admin/tenants/apikey/", params={"tenant__id__exact": pk})
    row_id = re.search(r'/admin/tenants/apikey/(\d+)/change/', listing.text).group(1)
    detail = admin.get(f"/admin/tenants/apikey/{row_id}/change/")
    for page in (listing, detail):
        assert page.status_code == 200
        assert f"tts_{prefix}_" in page.text
        assert secret not in page.text and digest not in page.text
    assert "clone, synthesize" in listing.text and "active" in listing.text

    # Bad forms are errors on the form, and create nothing.
    past = add_key(admin, pk, ["synthesize"], expires_date="2001-01-01", expires_time="00:00:00")
    assert past.status_code == 200 and "the expiry must be in the future" in past.text
    assert not KEY_RE.search(past.text)
    no_scope = add_key(admin, pk, [])
    assert no_scope.status_code == 200 and "This field is required" in no_scope.text
    assert not KEY_RE.search(no_scope.text)

    # Keys are revoked (an action), never deleted.
    assert admin.get(f"/admin/tenants/apikey/{row_id}/delete/").status_code == 403
    page = admin.get("/admin/tenants/apikey/")
    revoked = admin.http.post("/admin/tenants/apikey/", data={
        "csrfmiddlewaretoken": csrf_token(page.text), "action": "revoke_selected", "index": "0",
        "_selected_action": [row_id]})
    assert revoked.status_code == 302
    assert "Revoked 1 API key." in admin.get("/admin/tenants/apikey/").text
    refused = api_speakers(server, key)
    assert refused.status_code == 401 and "revoked" in refused.json()["message"]

    audit = admin.get("/admin/tenants/auditevent/", params={"tenant__id__exact": pk}).text
    assert "API key created" in audit and "API key revoked" in audit
    assert f"admin:{operator.username}" in audit
    assert secret not in audit


def test_usage_and_audit_are_read_only(admin: AdminClient) -> None:
    for model in ("usageday", "auditevent"):
        assert admin.get(f"/admin/tenants/{model}/").status_code == 200
        assert admin.get(f"/admin/tenants/{model}/add/").status_code == 403
    assert admin.get("/admin/tenants/usageday/", params={"day__year": "2026"}).status_code == 200
    index = admin.get("/admin/")
    assert "streams today" in index.text and "TTS platform admin" in index.text


# --- voices ------------------------------------------------------------------------------------


def clone_form(admin: AdminClient, tenant_pk: int, prompt_id: str, audio: bytes, text: str,
               filename: str = "prompt.wav") -> httpx.Response:
    return admin.post_form("/admin/voices/voice/add/", {
        "tenant": str(tenant_pk), "prompt_id": prompt_id, "prompt_text": text,
        "provenance_note": "Synthetic test speaker (made by the bundled engine)."},
        files={"prompt_audio": (filename, audio, "application/octet-stream")})


def voice_pk(response: httpx.Response) -> int:
    assert response.status_code == 302, response.text[-3000:]
    match = re.fullmatch(r"/admin/voices/voice/(\d+)/change/", response.headers["location"])
    assert match, response.headers["location"]
    return int(match.group(1))


def test_clone_listen_preview_note_and_remove(server: RunningServer, admin: AdminClient,
                                              prompt_wavs: dict[str, bytes]) -> None:
    tenant_pk, _ = add_tenant(admin)
    key = new_key(admin, tenant_pk)

    # A file that is no audio is a form error, not a server error.
    bad = clone_form(admin, tenant_pk, "broken", b"this is not audio " * 200, "hello", "notes.txt")
    assert bad.status_code == 200
    assert 'class="errorlist' in bad.text and "prompt audio" in bad.text
    assert api_speakers(server, key).json() == []

    pk = voice_pk(clone_form(admin, tenant_pk, "admin-voice", prompt_wavs["jf_alpha"], PROMPT_TEXTS["jf_alpha"]))
    assert api_speakers(server, key).json() == ["admin-voice"]
    page = admin.get(f"/admin/voices/voice/{pk}/change/")
    assert "Cloned voice" in page.text and "<audio" in page.text

    again = clone_form(admin, tenant_pk, "admin-voice", prompt_wavs["jf_alpha"], PROMPT_TEXTS["jf_alpha"])
    assert again.status_code == 200 and "already has a voice called" in again.text

    prompt = admin.get(f"/admin/voices/voice/{pk}/prompt-audio/")
    assert prompt.status_code == 200 and prompt.headers["content-type"] == "audio/wav"
    assert prompt.content == prompt_wavs["jf_alpha"]

    preview = admin.get(f"/admin/voices/voice/{pk}/preview.wav", params={"text": "你好，欢迎使用语音合成服务。"})
    assert preview.status_code == 200, preview.text
    assert preview.headers["content-type"] == "audio/wav"
    rate, seconds, rms = wav_facts(preview.content)
    assert rate == 24000 and 0.8 < seconds < 15 and rms > 0.01, (rate, seconds, rms)
    default = admin.get(f"/admin/voices/voice/{pk}/preview.wav")
    assert default.status_code == 200 and wav_facts(default.content)[1] > 1.0
    too_long = admin.get(f"/admin/voices/voice/{pk}/preview.wav", params={"text": "很长。" * 200})
    assert too_long.status_code == 400 and "longer than" in too_long.text

    # The provenance note is editable (and audited); nothing else about the voice is.
    changed = admin.post_form(f"/admin/voices/voice/{pk}/change/", {
        "provenance_note": "Consent on file: ticket OPS-1234.", "prompt_text": "tampered", "_save": "1"})
    assert changed.status_code == 302, changed.text[-3000:]
    page = admin.get(f"/admin/voices/voice/{pk}/change/")
    assert "Consent on file: ticket OPS-1234." in page.text and "tampered" not in page.text

    removed = admin.post_form(f"/admin/voices/voice/{pk}/delete/", {"post": "yes"})
    assert removed.status_code == 302
    assert api_speakers(server, key).json() == []
    assert admin.get(f"/admin/voices/voice/{pk}/prompt-audio/").status_code == 404

    audit = admin.get("/admin/tenants/auditevent/", params={"tenant__id__exact": tenant_pk}).text
    for action in ("cloned", "provenance note changed", "removed"):
        assert action in audit, action


def test_raw_pcm_prompt_plays_as_wav(server: RunningServer, admin: AdminClient,
                                     prompt_wavs: dict[str, bytes]) -> None:
    """A headerless 16-bit prompt is taken at 16 kHz; the player gets it wrapped as WAV at that rate."""
    tenant_pk, _ = add_tenant(admin)
    wav = prompt_wavs["jm_kumo"]
    pcm = wav[wav.index(b"data") + 8:]  # the samples alone, no header
    assert np.frombuffer(pcm, dtype="<i2").size > 16000
    pk = voice_pk(clone_form(admin, tenant_pk, "raw-voice", pcm, PROMPT_TEXTS["jm_kumo"], "prompt.pcm"))
    prompt = admin.get(f"/admin/voices/voice/{pk}/prompt-audio/")
    assert prompt.status_code == 200 and prompt.headers["content-type"] == "audio/wav"
    rate, seconds, _ = wav_facts(prompt.content)
    assert rate == 16000 and prompt.content[44:] == pcm
    assert abs(seconds - len(pcm) / 2 / 16000) < 0.01
    assert admin.post_form(f"/admin/voices/voice/{pk}/delete/", {"post": "yes"}).status_code == 302


def test_every_page_carries_the_platform_style(server: RunningServer, admin: AdminClient) -> None:
    style = "tts_admin/admin.css"
    login = httpx.get(f"{server.http}/admin/login/", timeout=10)
    assert login.status_code == 200 and style in login.text and "TTS platform admin" in login.text

    users = admin.get("/admin/auth/user/").text
    user_id = re.search(r"/admin/auth/user/(\d+)/change/", users).group(1)
    tenant_pk, _ = add_tenant(admin)
    pages = ["/admin/", "/admin/voices/", "/admin/tenants/", "/admin/auth/user/", "/admin/auth/user/add/",
             f"/admin/auth/user/{user_id}/change/", f"/admin/auth/user/{user_id}/password/", "/admin/auth/group/add/",
             "/admin/password_change/", f"/admin/voices/tenant/{tenant_pk}/history/",
             f"/admin/voices/tenant/{tenant_pk}/delete/", "/admin/voices/tenant/", "/admin/voices/voice/",
             "/admin/voices/voice/add/", "/admin/tenants/apikey/", "/admin/tenants/apikey/add/",
             "/admin/tenants/quota/", "/admin/tenants/usageday/", "/admin/tenants/auditevent/"]
    for path in pages:
        page = admin.get(path)
        assert page.status_code == 200, (path, page.status_code)
        assert style in page.text, path
    assert admin.get(f"/static/{style}").status_code == 200

    # Bulk deletion asks first (a styled page), then removes the tenant.
    listing = admin.get("/admin/voices/tenant/")
    confirm = admin.http.post("/admin/voices/tenant/", data={
        "csrfmiddlewaretoken": csrf_token(listing.text), "action": "delete_selected", "index": "0",
        "_selected_action": [str(tenant_pk)]})
    assert confirm.status_code == 200 and style in confirm.text and "Are you sure" in confirm.text
    done = admin.http.post("/admin/voices/tenant/", data={
        "csrfmiddlewaretoken": csrf_token(confirm.text), "action": "delete_selected", "post": "yes",
        "_selected_action": [str(tenant_pk)]})
    assert done.status_code == 302
    assert admin.get(f"/admin/voices/tenant/{tenant_pk}/change/").status_code == 302  # gone: back to the index

    logout = admin.http.post("/admin/logout/", data={"csrfmiddlewaretoken": csrf_token(admin.get("/admin/").text)})
    assert logout.status_code == 200 and style in logout.text
    assert admin.get("/admin/").status_code == 302


# --- admin work is bound by the voice quota and metered as usage (issue 17, item 3) ---------------


def api_usage(server: RunningServer, key: str) -> dict[str, float]:
    response = httpx.get(f"{server.http}/usage", headers={"Authorization": f"Bearer {key}"}, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["total"]


def test_admin_clones_obey_the_voice_quota_and_count_as_usage(server: RunningServer, admin: AdminClient,
                                                             prompt_wavs: dict[str, bytes]) -> None:
    tenant_pk, _ = add_tenant(admin, {"max_voices": "1"})
    key = new_key(admin, tenant_pk)
    pk = voice_pk(clone_form(admin, tenant_pk, "first", prompt_wavs["jf_alpha"], PROMPT_TEXTS["jf_alpha"]))
    assert api_usage(server, key)["clones"] == 1

    text = "你好，欢迎使用语音合成服务。"
    preview = admin.get(f"/admin/voices/voice/{pk}/preview.wav", params={"text": text})
    assert preview.status_code == 200, preview.text
    used = api_usage(server, key)
    assert used["streams"] == 1 and used["characters"] == len(text)
    assert abs(used["audio_seconds"] - wav_facts(preview.content)[1]) < 0.01

    over = clone_form(admin, tenant_pk, "second", prompt_wavs["jm_kumo"], PROMPT_TEXTS["jm_kumo"])
    assert over.status_code == 200 and 'class="errorlist' in over.text
    assert "1 voices (its limit)" in over.text
    assert api_speakers(server, key).json() == ["first"]
    assert api_usage(server, key)["clones"] == 1


# --- the dashboard shows a panel only to who may view what it shows (issue 17, item 6) -------------


def create_staff_user(server: RunningServer, username: str, password: str, *permissions: str) -> None:
    """A staff user with exactly ``permissions`` ("app_label.codename"), made with Django's shell command."""
    code = ("from django.contrib.auth import get_user_model; from django.contrib.auth.models import Permission; "
            f"user = get_user_model().objects.create_user({username!r}, password={password!r}, is_staff=True); "
            f"wanted = {list(permissions)!r}; "
            "user.user_permissions.set([Permission.objects.get(content_type__app_label=p.split('.')[0], "
            "codename=p.split('.')[1]) for p in wanted])")
    admin_support_manage(server, "shell", "-c", code)


def staff_index(server: RunningServer, *permissions: str) -> str:
    username, password = f"staff-{uuid.uuid4().hex[:8]}", secrets.token_urlsafe(16)
    create_staff_user(server, username, password, *permissions)
    client = AdminClient(server)
    try:
        response = client.login(username, password)
        assert response.status_code == 302, response.text[-2000:]
        index = client.get("/admin/")
        assert index.status_code == 200
        return index.text
    finally:
        client.close()


def test_dashboard_panels_need_the_matching_view_permission(server: RunningServer, admin: AdminClient,
                                                           prompt_wavs: dict[str, bytes]) -> None:
    tenant_pk, slug = add_tenant(admin)
    key = new_key(admin, tenant_pk)
    prefix = key.split("_")[1]
    prompt_id = f"dash-{uuid.uuid4().hex[:6]}"
    body = {"prompt_audio": base64.b64encode(prompt_wavs["jm_kumo"]).decode(), "prompt_text": PROMPT_TEXTS["jm_kumo"],
            "prompt_id": prompt_id}
    cloned = httpx.post(f"{server.http}/clone", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=120)
    assert cloned.status_code == 200, cloned.text  # an event with the tenant, the key's prefix and a voice id
    everything = admin.get("/admin/").text
    for secret in (slug, f"key:{prefix}", prompt_id, "Recent platform events", "active API keys"):
        assert secret in everything, secret

    bare = staff_index(server)
    for secret in (slug, prefix, prompt_id, "Recent platform events", "active API keys", "streams today",
                   ">tenants<", ">voices<", "Clone a voice", "Create an API key"):
        assert secret not in bare, secret

    events = staff_index(server, "tenants.view_auditevent")
    for shown in (slug, f"key:{prefix}", prompt_id, "Recent platform events"):
        assert shown in events, shown
    assert "active API keys" not in events and "streams today" not in events

    voices = staff_index(server, "voices.view_voice", "tenants.view_apikey")
    assert ">voices<" in voices and "active API keys" in voices
    assert "Recent platform events" not in voices and slug not in voices and prompt_id not in voices


# --- batch jobs (issue 20) ----------------------------------------------------------------------


def test_batch_jobs_show_progress_play_items_cancel_and_delete(server: RunningServer, admin: AdminClient,
                                                              voice: str) -> None:
    from tests.e2e.test_batches import LONG_EN, TERMINAL, put, unique, wait_for

    done_id, busy_id = unique("adm-done"), unique("adm-busy")
    assert put(server, done_id, {"prompt_id": voice, "inputs": [{"text": "One."}, {"text": "两个。"}]}).status_code == 201
    wait_for(server, done_id, lambda j: j["state"] in TERMINAL)
    assert put(server, busy_id, {"prompt_id": voice, "inputs": [{"text": LONG_EN}] * 4}).status_code == 201

    listing = admin.get("/admin/batches/batch/")
    assert listing.status_code == 200 and done_id in listing.text and "100% (2 ok, 0 failed)" in listing.text
    pks = {batch_id: int(re.search(rf'/admin/batches/batch/(\d+)/change/"[^>]*>{batch_id}<', listing.text).group(1))
           for batch_id in (done_id, busy_id)}
    page = admin.get(f"/admin/batches/batch/{pks[done_id]}/change/")
    assert page.status_code == 200
    players = re.findall(r'<audio controls preload="none" src="([^"]+)">', page.text)
    assert len(players) == 2
    audio = admin.get(players[1])
    assert audio.status_code == 200 and audio.headers["content-type"] == "audio/wav" and audio.content[:4] == b"RIFF"
    assert httpx.get(f"{server.http}{players[1]}", timeout=10).status_code == 302  # not without a session

    cancelled = admin.post_form("/admin/batches/batch/", {"action": "cancel_jobs", "index": "0",
                                                          "_selected_action": [str(pks[busy_id])]})
    assert cancelled.status_code == 302
    wait_for(server, busy_id, lambda j: j["state"] == "cancelled" and j["counts"]["running"] == 0, timeout=30)

    deleted = admin.post_form("/admin/batches/batch/", {"action": "delete_jobs", "index": "0",
                                                        "_selected_action": [str(pks[done_id]), str(pks[busy_id])]})
    assert deleted.status_code == 302
    for batch_id in (done_id, busy_id):
        assert httpx.get(f"{server.http}/batches/{batch_id}", timeout=10).status_code == 404
    assert httpx.get(f"{server.http}{players[1]}", timeout=10).status_code == 302
    assert admin.get(players[1]).status_code == 404
    events = admin.get("/admin/tenants/auditevent/").text
    assert f"batch {busy_id}" in events and f"batch {done_id}" in events
