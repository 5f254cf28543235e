"""Fetching a client-supplied http(s) URL without becoming an SSRF proxy.

The address check sits in the connection layer: our httpcore network backend resolves
the host, checks *every* address it got, and connects to a checked address itself, so
DNS cannot change its answer between the check and the connect. Redirects are followed
by hand, and each hop opens its connections through the same backend. The backend
also clamps every socket operation to one overall deadline, so a server dripping bytes
cannot stretch the total time.

Not covered: ``getaddrinfo`` has no timeout of its own, so a slow DNS server can
exceed ``timeout_s`` by the resolver's own timeout.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpcore
import httpx

from core.errors import ApiError, Forbidden, PayloadTooLarge

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
AddressCheck = Callable[[IPAddress], bool]

MAX_REDIRECTS = 5
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_PREFIX = "could not fetch prompt_audio URL"


def fetch_url(url: str, *, max_bytes: int, timeout_s: float, allow_private: bool) -> bytes:
    """GET ``url`` and return at most ``max_bytes`` of body."""
    check: AddressCheck = _any_address if allow_private else is_public_address
    return fetch_url_checked(url, max_bytes=max_bytes, timeout_s=timeout_s, address_allowed=check)


def fetch_url_checked(url: str, *, max_bytes: int, timeout_s: float, address_allowed: AddressCheck) -> bytes:
    """:func:`fetch_url` with the per-address rule spelled out (every hop uses it)."""
    deadline = time.monotonic() + timeout_s
    current = check_url(url)
    backend = _GuardedBackend(address_allowed, deadline)
    headers = {"User-Agent": "ttsplatform-prompt-fetch/1", "Accept-Encoding": "identity"}
    with httpx.Client(
        transport=_GuardedTransport(backend),
        timeout=httpx.Timeout(timeout_s),
        follow_redirects=False,
        trust_env=False,  # an environment proxy would bypass the address check
        headers=headers,
    ) as client:
        for _ in range(MAX_REDIRECTS + 1):
            with client.stream("GET", current) as response:
                location = response.headers.get("location")
                if response.status_code in _REDIRECT_STATUSES and location:
                    current = check_url(str(current.join(location)))
                    continue
                if not 200 <= response.status_code < 300:
                    raise ApiError(f"{_PREFIX}: the server answered HTTP {response.status_code}")
                return _read_capped(response, max_bytes)
    raise ApiError(f"{_PREFIX}: more than {MAX_REDIRECTS} redirects")


def post_checked(url: str, body: bytes, headers: dict[str, str], *, timeout_s: float,
                 address_allowed: AddressCheck, label: str) -> int:
    """POST ``body`` to ``url`` through the same address-checked connections as a fetch (no
    redirects followed: a 3xx is the receiver's answer); returns the status. ApiError (403
    for a refused address) when no answer came."""
    deadline = time.monotonic() + timeout_s
    target = check_url(url, label)
    backend = _GuardedBackend(address_allowed, deadline, label)
    with httpx.Client(transport=_GuardedTransport(backend, f"could not reach {label}"),
                      timeout=httpx.Timeout(timeout_s), follow_redirects=False, trust_env=False) as client:
        response = client.post(target, content=body, headers=headers)
        return response.status_code


def check_url(url: str, label: str = "") -> httpx.URL:
    """Parse ``url`` and refuse anything but http(s) with a host."""
    prefix = f"bad {label}" if label else _PREFIX
    try:
        parsed = httpx.URL(url)
        host = parsed.host  # decodes IDNA: an invalid A-label ("xn--zz") raises here
    except (httpx.InvalidURL, TypeError, ValueError):  # UnicodeError (idna's IDNAError) is a ValueError
        raise ApiError(f"{prefix}: malformed URL") from None
    if parsed.scheme not in ("http", "https"):
        raise ApiError(f"{prefix}: only http and https URLs are allowed")
    if not host:
        raise ApiError(f"{prefix}: the URL has no host")
    return parsed


def is_public_address(ip: IPAddress) -> bool:
    """True for globally routable unicast addresses; embedded IPv4 is judged as IPv4."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip.teredo is not None:
            embedded = ip.teredo[1]
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return is_public_address(embedded)
    return ip.is_global and not (
        ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_reserved or ip.is_unspecified
    )


def resolve_host(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` stands for, literal forms included.

    IPv4 shorthands (``2130706433``, ``0x7f.1``, ``0177.0.0.1``, ``127.1``) are
    parsed the way the C library would, so they are judged as the address they mean.
    """
    bare = host.strip("[]")
    try:
        return [ipaddress.ip_address(bare)]
    except ValueError:
        pass
    try:
        return [ipaddress.IPv4Address(socket.inet_aton(bare))]
    except OSError:
        pass
    try:
        infos = socket.getaddrinfo(bare, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise ApiError(f"{_PREFIX}: cannot resolve host {host!r}") from None
    found: list[IPAddress] = []
    for info in infos:
        ip = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if ip not in found:
            found.append(ip)
    if not found:
        raise ApiError(f"{_PREFIX}: cannot resolve host {host!r}")
    return found


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    return httpx.create_ssl_context()


def _any_address(_ip: IPAddress) -> bool:
    return True


def _read_capped(response: httpx.Response, max_bytes: int) -> bytes:
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLarge(f"{_PREFIX}: the file is larger than {max_bytes} bytes")
    body = bytearray()
    for chunk in response.iter_raw():  # raw: no gzip bomb behind our back
        body += chunk
        if len(body) > max_bytes:
            raise PayloadTooLarge(f"{_PREFIX}: the file is larger than {max_bytes} bytes")
    return bytes(body)


class _DeadlineStream(httpcore.NetworkStream):
    """Clamps each socket operation's timeout to what is left of the overall budget."""

    def __init__(self, inner: httpcore.NetworkStream, deadline: float) -> None:
        self._inner = inner
        self._deadline = deadline

    def _left(self, timeout: float | None) -> float:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise httpcore.ReadTimeout("overall deadline passed")
        return left if timeout is None else min(timeout, left)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, self._left(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, self._left(timeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        inner = self._inner.start_tls(ssl_context, server_hostname, self._left(timeout))
        return _DeadlineStream(inner, self._deadline)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _GuardedBackend(httpcore.NetworkBackend):
    def __init__(self, address_allowed: AddressCheck, deadline: float, label: str = "prompt_audio URL") -> None:
        self._allowed = address_allowed
        self._deadline = deadline
        self._label = label
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.NetworkStream:
        addresses = resolve_host(host, port)
        if not all(self._allowed(ip) for ip in addresses):
            # The address is not echoed: that would map internal DNS names for a caller.
            raise Forbidden(
                f"{self._label} points to a private, local or reserved network address, "
                "which this server does not connect to"
            )
        error: Exception = httpcore.ConnectError(f"cannot connect to {host}")
        for ip in addresses:
            left = self._deadline - time.monotonic()
            if left <= 0:
                raise httpcore.ConnectTimeout("overall deadline passed")
            try:
                stream = self._inner.connect_tcp(
                    str(ip),
                    port,
                    timeout=left if timeout is None else min(timeout, left),
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except httpcore.ConnectError as exc:
                error = exc
                continue
            return _DeadlineStream(stream, self._deadline)
        raise error

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Any = None
    ) -> httpcore.NetworkStream:
        raise Forbidden(f"{self._label}: unix sockets are not allowed")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class _CoreBody(httpx.SyncByteStream):
    def __init__(self, response: httpcore.Response, prefix: str) -> None:
        self._response = response
        self._prefix = prefix

    def __iter__(self) -> Iterator[bytes]:
        with _mapped_errors(self._prefix):
            yield from self._response.iter_stream()

    def close(self) -> None:
        self._response.close()


class _GuardedTransport(httpx.BaseTransport):
    """A plain httpx transport over an httpcore pool that uses our backend."""

    def __init__(self, backend: httpcore.NetworkBackend, prefix: str = _PREFIX) -> None:
        self._pool = httpcore.ConnectionPool(ssl_context=_ssl_context(), network_backend=backend)
        self._prefix = prefix

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _mapped_errors(self._prefix):
            core_response = self._pool.handle_request(core_request)
        return httpx.Response(
            status_code=core_response.status,
            headers=core_response.headers,
            stream=_CoreBody(core_response, self._prefix),
            extensions=core_response.extensions,
        )

    def close(self) -> None:
        self._pool.close()


@contextmanager
def _mapped_errors(prefix: str = _PREFIX) -> Iterator[None]:
    """httpcore failures become messages a client can act on."""
    try:
        yield
    except httpcore.TimeoutException:
        raise ApiError(f"{prefix}: timed out") from None
    except httpcore.ConnectError:
        raise ApiError(f"{prefix}: connection failed") from None
    except (httpcore.NetworkError, httpcore.ProtocolError) as exc:
        raise ApiError(f"{prefix}: the connection broke ({exc.__class__.__name__})") from None
    except httpcore.UnsupportedProtocol:
        raise ApiError(f"{prefix}: unsupported protocol") from None
