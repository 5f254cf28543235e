"""manage.py set_quota TENANT [--streams N] [--chars-per-day N] ...: set (or clear, with 0) limits."""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from tenants.models import Quota
from voices.models import Tenant

FIELDS = {
    "streams": "max_concurrent_streams",
    "chars_per_day": "max_chars_per_day",
    "voices": "max_voices",
    "clones_per_hour": "max_clones_per_hour",
    "payload_bytes": "max_payload_bytes",
    "batches": "max_concurrent_batches",
}


class Command(BaseCommand):
    help = "Set a tenant's quotas; a value of 0 removes that limit."

    def add_arguments(self, parser) -> None:
        parser.add_argument("tenant", help="the tenant's slug")
        for option in FIELDS:
            parser.add_argument(f"--{option.replace('_', '-')}", dest=option, type=int)

    def handle(self, *args, tenant: str, **options) -> None:
        row = Tenant.objects.filter(slug=tenant).first()
        if row is None:
            raise CommandError(f"no tenant {tenant!r}")
        quota, _ = Quota.objects.get_or_create(tenant=row)
        for option, field in FIELDS.items():
            value = options.get(option)
            if value is not None:
                if value < 0:
                    raise CommandError(f"--{option.replace('_', '-')} must be >= 0")
                setattr(quota, field, value or None)
        quota.save()
        limits = {field: getattr(quota, field) for field in FIELDS.values()}
        self.stdout.write(f"quota of {row.slug!r}: " + ", ".join(f"{k}={v if v is not None else 'unlimited'}"
                                                               for k, v in limits.items()))
