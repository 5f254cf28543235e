"""Delete expired batch jobs with their files, and stored blobs nothing points at any more."""
from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from batches.sweep import ORPHAN_MIN_AGE_S, purge_expired, purge_orphan_blobs


class Command(BaseCommand):
    help = ("Delete batch jobs past their ttl_hours and every file they own; then delete stored blobs no "
            "voice or batch item points at (the prompt audio of a clone whose task expired, say).")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--orphan-min-age-hours", type=float, default=ORPHAN_MIN_AGE_S / 3600,
                            help="only blobs older than this count as orphans (default %(default)s)")
        parser.add_argument("--no-orphans", action="store_true", help="leave blobs alone; expired jobs only")

    def handle(self, *args: Any, **options: Any) -> None:
        jobs, files = purge_expired()
        self.stdout.write(f"expired batch jobs deleted: {jobs} ({files} files)")
        if not options["no_orphans"]:
            orphans = purge_orphan_blobs(options["orphan_min_age_hours"] * 3600)
            self.stdout.write(f"orphaned blobs deleted: {orphans}")
