"""manage.py revoke_api_key PREFIX: the key stops working at once (it stays listed, revoked)."""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from tenants import audit
from tenants.keys import revoke_key
from tenants.models import ApiKey, AuditEvent


class Command(BaseCommand):
    help = "Revoke an API key, given its prefix (the part after tts_) or the whole key."

    def add_arguments(self, parser) -> None:
        parser.add_argument("key", help="tts_<prefix>_... or just <prefix>")

    def handle(self, *args, key: str, **options) -> None:
        prefix = key.split("_")[1] if key.startswith("tts_") and key.count("_") >= 2 else key
        row = ApiKey.objects.select_related("tenant").filter(prefix=prefix).first()
        if row is None:
            raise CommandError(f"no API key with prefix {prefix!r}")
        revoke_key(row)
        audit.record(row.tenant_id, "system", AuditEvent.Action.KEY_REVOKED, detail=f"tts_{row.prefix}_…")
        self.stdout.write(f"revoked tts_{row.prefix}_… of {row.tenant.slug!r}")
