"""Which tenant a request acts for. One default tenant until API keys arrive; every
query is already scoped by the tenant this returns."""
from __future__ import annotations

from django.http import HttpRequest

from voices.models import Tenant


def default_tenant() -> Tenant:
    tenant, _ = Tenant.objects.get_or_create(slug=Tenant.DEFAULT_SLUG, defaults={"name": "Default tenant"})
    return tenant


def tenant_for_request(request: HttpRequest | None = None) -> Tenant:
    return default_tenant()
