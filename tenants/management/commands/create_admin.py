"""manage.py create_admin USERNAME: the first admin-panel user, without prompts.

The password comes from TTS_ADMIN_PASSWORD, or is generated and printed on the last line.
"""
from __future__ import annotations

import os
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Create a superuser for the admin panel (password from TTS_ADMIN_PASSWORD, else generated and printed)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("username")
        parser.add_argument("--email", default="")

    def handle(self, *args, username: str, email: str, **options) -> None:
        users = get_user_model()
        if users.objects.filter(username=username).exists():
            raise CommandError(f"user {username!r} exists already")
        password = os.environ.get("TTS_ADMIN_PASSWORD") or secrets.token_urlsafe(16)
        users.objects.create_superuser(username=username, email=email, password=password)
        self.stdout.write(f"created admin {username!r}; log in at /admin/")
        if not os.environ.get("TTS_ADMIN_PASSWORD"):
            self.stdout.write(password)
