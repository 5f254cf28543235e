"""fetch_url against a real HTTP server on 127.0.0.1; nothing else is contacted.

Refusals are checked by asserting the server never saw a request, so they prove the
check happens before any connection rather than after.
"""

from __future__ import annotations

import gzip
import ipaddress
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self
from urllib.parse import parse_qs, urlsplit

import pytest

from core.errors import ApiError, Forbidden, PayloadTooLarge
from voices.url_fetch import (
    IPAddress,
    check_url,
    fetch_url,
    fetch_url_checked,
    is_public_address,
    resolve_host,
)

BODY = bytes(range(256)) * 64  # 16 KiB


class LocalServer(ThreadingHTTPServer):
    """Serves ``files`` at their paths plus a few misbehaving routes."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files: dict[str, bytes] = {"/ok": BODY}
        self.seen: list[str] = []
        self.release = threading.Event()
        self._thread = threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: LocalServer

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:
        self.server.seen.append(self.path)
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        route = url.path
        if route in self.server.files:
            self._send(200, self.server.files[route])
        elif route == "/redirect":
            self._redirect(query["to"][0])
        elif route == "/loop":
            self._redirect("/loop")
        elif route == "/status":
            self._send(int(query["code"][0]), b"nope")
        elif route == "/big-declared":
            self._send(200, b"x" * 5000)
        elif route == "/big-undeclared":  # HTTP/1.0, body delimited by close
            self.send_response(200)
            self.end_headers()
            for _ in range(50):
                self.wfile.write(b"y" * 1000)
        elif route == "/gzip":
            packed = gzip.compress(b"z" * 100_000)
            self.send_response(200)
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(packed)))
            self.end_headers()
            self.wfile.write(packed)
        elif route == "/stall-headers":
            self.server.release.wait(10)
        elif route == "/stall-body":
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"a" * 10)
            self.wfile.flush()
            self.server.release.wait(10)
        elif route == "/drip":  # a byte every 0.1 s: each read is quick, the total is not
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            for _ in range(1000):
                if self.server.release.wait(0.1):
                    return
                self.wfile.write(b"d")
                self.wfile.flush()
        else:
            self._send(404, b"missing")

    def _send(self, code: int, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture(scope="module")
def shared_server() -> Iterator[LocalServer]:
    with LocalServer() as srv:
        yield srv


@pytest.fixture
def server(shared_server: LocalServer) -> LocalServer:
    shared_server.seen.clear()
    return shared_server


def _fetch(url: str, *, allow_private: bool = True, max_bytes: int = 1 << 20, timeout_s: float = 5.0) -> bytes:
    return fetch_url(url, max_bytes=max_bytes, timeout_s=timeout_s, allow_private=allow_private)


def test_fetches_body(server: LocalServer) -> None:
    assert _fetch(server.url("/ok")) == BODY


def test_body_exactly_at_the_cap_is_fine(server: LocalServer) -> None:
    assert _fetch(server.url("/ok"), max_bytes=len(BODY)) == BODY


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "localhost",
        "[::1]",
        "2130706433",  # decimal 127.0.0.1
        "0x7f.1",  # hex + shorthand
        "0x7f000001",
        "127.1",
        "[::ffff:127.0.0.1]",  # IPv4-mapped IPv6
        "[::ffff:7f00:1]",
        "0.0.0.0",
        "[::]",
    ],
)
def test_refuses_loopback_in_every_spelling(server: LocalServer, host: str) -> None:
    with pytest.raises(Forbidden) as info:
        _fetch(f"http://{host}:{server.port}/ok", allow_private=False)
    assert info.value.status == 403
    assert "private" in info.value.message
    assert server.seen == []  # refused before connecting


def test_octal_ipv4_is_refused_one_way_or_another(server: LocalServer) -> None:
    # httpx already calls it malformed (400); resolve_host would read it as 127.0.0.1.
    with pytest.raises(ApiError) as info:
        _fetch(f"http://0177.0.0.1:{server.port}/ok", allow_private=False)
    assert info.value.status in (400, 403)
    assert server.seen == []


@pytest.mark.parametrize(
    "url",
    [
        "http://10.1.2.3/",
        "http://172.16.0.1/",
        "http://192.168.1.1/",
        "http://169.254.169.254/latest/meta-data/",  # cloud metadata
        "http://100.64.0.1/",  # carrier-grade NAT
        "http://224.0.0.1/",  # multicast
        "http://240.0.0.1/",  # reserved
        "http://255.255.255.255/",
        "http://[fe80::1]/",
        "http://[fc00::1]/",
        "http://[ff02::1]/",
        "https://10.0.0.1/",
    ],
)
def test_refuses_private_and_special_ranges(url: str) -> None:
    with pytest.raises(Forbidden):
        _fetch(url, allow_private=False, timeout_s=1.0)


@pytest.mark.parametrize(
    ("text", "public"),
    [
        ("8.8.8.8", True),
        ("1.1.1.1", True),
        ("2606:4700:4700::1111", True),
        ("::ffff:8.8.8.8", True),
        ("127.0.0.1", False),
        ("::ffff:10.0.0.1", False),
        ("64:ff9b::a00:1", False),  # NAT64 of 10.0.0.1
        ("64:ff9b::808:808", True),  # NAT64 of 8.8.8.8
        ("2002:7f00:1::", False),  # 6to4 of 127.0.0.1
        ("::127.0.0.1", False),  # deprecated IPv4-compatible
        ("192.0.2.1", False),  # documentation range
        ("198.18.0.1", False),  # benchmarking
    ],
)
def test_is_public_address(text: str, public: bool) -> None:
    assert is_public_address(ipaddress.ip_address(text)) is public


@pytest.mark.parametrize("host", ["2130706433", "0x7f.1", "0177.0.0.1", "127.1", "[::ffff:127.0.0.1]"])
def test_resolve_host_parses_numeric_forms_without_dns(host: str) -> None:
    (ip,) = resolve_host(host, 80)
    assert ip in (ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::ffff:127.0.0.1"))


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://127.0.0.1/x", "gopher://127.0.0.1:70/_x", "http://", "http:///path",
            "http://xn--zz.com/a.wav", "https://xn--a.example/"]  # invalid IDNA A-labels: 400, not a crash
)
def test_rejects_non_http_urls(url: str) -> None:
    with pytest.raises(ApiError) as info:
        check_url(url)
    assert info.value.status == 400


def test_follows_redirects(server: LocalServer) -> None:
    assert _fetch(server.url(f"/redirect?to={server.url('/ok')}")) == BODY
    assert server.seen[0].startswith("/redirect") and server.seen[1] == "/ok"


def test_each_redirect_hop_is_checked_again(server: LocalServer) -> None:
    """First hop allowed (127.0.0.1 plays "public"), the redirect target is not."""
    checked: list[IPAddress] = []

    def allowed(ip: IPAddress) -> bool:
        checked.append(ip)
        return ip == ipaddress.ip_address("127.0.0.1") or is_public_address(ip)

    target = f"http://127.0.0.2:{server.port}/ok"
    with pytest.raises(Forbidden):
        fetch_url_checked(
            server.url(f"/redirect?to={target}"),
            max_bytes=1 << 20,
            timeout_s=5.0,
            address_allowed=allowed,
        )
    assert [p.split("?")[0] for p in server.seen] == ["/redirect"]  # hop 1 really happened
    assert checked == [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("127.0.0.2")]


def test_redirect_to_cloud_metadata_is_refused(server: LocalServer) -> None:
    def allowed(ip: IPAddress) -> bool:
        return ip == ipaddress.ip_address("127.0.0.1")

    with pytest.raises(Forbidden):
        fetch_url_checked(
            server.url("/redirect?to=http://169.254.169.254/latest/meta-data/"),
            max_bytes=1 << 20,
            timeout_s=5.0,
            address_allowed=allowed,
        )


def test_redirect_to_another_scheme_is_refused(server: LocalServer) -> None:
    with pytest.raises(ApiError, match="only http and https"):
        _fetch(server.url("/redirect?to=file:///etc/passwd"))


def test_redirect_loop_stops(server: LocalServer) -> None:
    with pytest.raises(ApiError, match="redirects"):
        _fetch(server.url("/loop"))
    assert len(server.seen) == 6


@pytest.mark.parametrize("route", ["/big-declared", "/big-undeclared"])
def test_size_cap(server: LocalServer, route: str) -> None:
    with pytest.raises(PayloadTooLarge) as info:
        _fetch(server.url(route), max_bytes=4096)
    assert info.value.status == 413


def test_compressed_body_is_not_inflated(server: LocalServer) -> None:
    body = _fetch(server.url("/gzip"), max_bytes=4096)
    assert gzip.decompress(body) == b"z" * 100_000


@pytest.mark.parametrize("route", ["/stall-headers", "/stall-body", "/drip"])
def test_total_timeout(server: LocalServer, route: str) -> None:
    started = time.monotonic()
    with pytest.raises(ApiError) as info:
        _fetch(server.url(route), timeout_s=0.6)
    elapsed = time.monotonic() - started
    assert info.value.status == 400
    assert info.value.message == "could not fetch prompt_audio URL: timed out"
    assert elapsed < 1.5


@pytest.mark.parametrize("code", [404, 403, 500, 503])
def test_upstream_status(server: LocalServer, code: int) -> None:
    with pytest.raises(ApiError) as info:
        _fetch(server.url(f"/status?code={code}"))
    assert info.value.status == 400
    assert f"HTTP {code}" in info.value.message


def test_connection_refused_is_a_clear_error() -> None:
    with LocalServer() as srv:
        port = srv.port
    with pytest.raises(ApiError, match="connection failed"):
        _fetch(f"http://127.0.0.1:{port}/ok")
