"""manage.py create_api_key TENANT [--scopes ...]: prints the new key alone on the last line."""
from __future__ import annotations

from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from tenants import audit
from tenants.keys import create_key
from tenants.models import ALL_SCOPES, AuditEvent
from voices.models import Tenant


class Command(BaseCommand):
    help = "Create an API key for a tenant; the key is printed once, on the last line."

    def add_arguments(self, parser) -> None:
        parser.add_argument("tenant", help="the tenant's slug")
        parser.add_argument("--scopes", nargs="+", default=list(ALL_SCOPES), choices=ALL_SCOPES,
                            help="what the key may do (default: everything)")
        parser.add_argument("--name", default="", help="a label for people")
        parser.add_argument("--expires-days", type=float, help="the key stops working after this many days")

    def handle(self, *args, tenant: str, scopes: list[str], name: str, expires_days: float | None, **options) -> None:
        row = Tenant.objects.filter(slug=tenant).first()
        if row is None:
            raise CommandError(f"no tenant {tenant!r} (create it with create_tenant)")
        if expires_days is not None and expires_days <= 0:
            raise CommandError("--expires-days must be positive")
        expires_at = timezone.now() + timedelta(days=expires_days) if expires_days else None
        key_row, key = create_key(row, scopes, name=name, expires_at=expires_at)
        audit.record(row.id, "system", AuditEvent.Action.KEY_CREATED, detail=f"tts_{key_row.prefix}_…")
        until = f", expires {expires_at:%Y-%m-%d %H:%M} UTC" if expires_at else ""
        self.stdout.write(f"API key tts_{key_row.prefix}_… for {row.slug!r} (scopes: {', '.join(sorted(scopes))}{until})")
        self.stdout.write(key)
