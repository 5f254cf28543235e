"""manage.py create_tenant NAME: a new tenant and its first API key (printed alone on the last line)."""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.db import IntegrityError
from django.utils.text import slugify

from tenants import audit
from tenants.keys import create_key
from tenants.models import ALL_SCOPES, AuditEvent
from voices.models import Tenant


class Command(BaseCommand):
    help = "Create a tenant and an API key with every scope; the key is printed once, on the last line."

    def add_arguments(self, parser) -> None:
        parser.add_argument("name", help="the tenant's display name")
        parser.add_argument("--slug", help="short unique id (default: from the name)")

    def handle(self, *args, name: str, slug: str | None = None, **options) -> None:
        slug = slugify(slug or name)[:64]
        if not slug:
            raise CommandError("the name gives an empty slug; pass --slug")
        try:
            tenant = Tenant.objects.create(slug=slug, name=name)
        except IntegrityError:
            raise CommandError(f"a tenant with slug {slug!r} already exists") from None
        row, key = create_key(tenant, ALL_SCOPES, name="first key")
        audit.record(tenant.id, "system", AuditEvent.Action.KEY_CREATED, detail=f"tts_{row.prefix}_…")
        self.stdout.write(f"created tenant {tenant.slug!r} with API key tts_{row.prefix}_… (scopes: all)")
        self.stdout.write(key)
