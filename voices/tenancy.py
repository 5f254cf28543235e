"""The default tenant: the one open-mode callers (no API key) act for.
Callers with a key are resolved by ``tenants.auth``."""
from __future__ import annotations

from voices.models import Tenant


def default_tenant() -> Tenant:
    tenant, _ = Tenant.objects.get_or_create(slug=Tenant.DEFAULT_SLUG, defaults={"name": "Default tenant"})
    return tenant
