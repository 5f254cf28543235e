"""Who is calling: an API key's tenant and scopes, or (open mode) the default tenant.

REST takes ``Authorization: Bearer <key>`` only: a key in a URL ends up in access logs,
proxy logs and browser history, so ``?api_key=`` on REST is refused with 400 rather than
ignored (ignoring it would silently act for the default tenant in open mode). The
WebSocket takes the same header or, for browsers that cannot set headers on one,
``?api_key=<key>`` (redacted from every log line, see core/logs.py). A key that is
sent must be valid, even in open mode. Without one, open mode (TTS_REQUIRE_API_KEY=false,
the embedded default) acts for the default tenant with every scope, as the original
servers did.
"""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs

from django.conf import settings
from django.http import HttpRequest

from core.errors import ApiError, Forbidden, Unauthorized
from tenants.errors import InvalidKey
from tenants.keys import verify_key
from tenants.models import ALL_SCOPES
from voices.models import Tenant
from voices.tenancy import default_tenant


@dataclass(frozen=True)
class Caller:
    tenant: Tenant
    scopes: frozenset[str]
    #: for the audit log: "key:<prefix>" or "open"
    actor: str
    #: True when acting through an API key (its tenant's own cache area applies)
    keyed: bool

    def require(self, scope: str) -> None:
        if scope not in self.scopes:
            raise Forbidden(f"this API key does not have the '{scope}' scope")


def _bearer(header: str | None) -> str | None:
    if not header:
        return None
    kind, _, token = header.strip().partition(" ")
    if kind.lower() != "bearer" or not token.strip():
        raise Unauthorized("Authorization must be 'Bearer <API key>'")
    return token.strip()


def caller_for(authorization: str | None, query_key: str | None = None) -> Caller:
    """Blocking (database): run it through sync_to_async from async code."""
    key = _bearer(authorization) or (query_key or None)
    if key:
        try:
            row = verify_key(key)
        except InvalidKey as exc:
            raise Unauthorized(str(exc)) from None
        return Caller(row.tenant, frozenset(row.scopes), f"key:{row.prefix}", keyed=True)
    if settings.TTS_REQUIRE_API_KEY:
        raise Unauthorized("an API key is required: send 'Authorization: Bearer <key>'")
    return Caller(default_tenant(), frozenset(ALL_SCOPES), "open", keyed=False)


QUERY_KEY = "api_key"


def caller_for_request(request: HttpRequest) -> Caller:
    """The caller of a REST request: the Authorization header only (blocking: database)."""
    if QUERY_KEY in request.GET:
        raise ApiError(f"'{QUERY_KEY}' in the URL is not accepted on REST endpoints (URLs end up in logs); "
                       "send 'Authorization: Bearer <key>' instead", 400)
    return caller_for(request.headers.get("Authorization"))


def caller_for_scope(scope: dict) -> Caller:
    """The caller of an ASGI (WebSocket) connection."""
    headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope.get("headers", [])}
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    return caller_for(headers.get("authorization"), (query.get(QUERY_KEY) or [None])[0])
