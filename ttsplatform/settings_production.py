"""Settings for a hosted deployment: the defaults of settings.py, with the safe choices
switched on (set DJANGO_SETTINGS_MODULE=ttsplatform.settings_production).

Every value can still be overridden by its environment variable.
"""
from __future__ import annotations

import os

os.environ.setdefault("TTS_REQUIRE_API_KEY", "true")
os.environ.setdefault("TTS_MODE", "distributed")
os.environ.setdefault("DJANGO_DEBUG", "false")

from ttsplatform.settings import *  # noqa: E402,F401,F403
from ttsplatform.settings import SECRET_KEY  # noqa: E402

if SECRET_KEY.startswith("insecure-"):
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured("set DJANGO_SECRET_KEY for a production deployment")

SESSION_COOKIE_SECURE = os.environ.get("TTS_SECURE_COOKIES", "true").lower() in {"1", "true", "yes"}
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
