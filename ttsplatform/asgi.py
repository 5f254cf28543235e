"""ASGI entry point: Django views for HTTP, the /tts consumer for WebSockets.

The engine starts loading in a background thread as soon as the process starts;
/health answers 503 until it is loaded and warm, and so do early requests (503 + Retry-After,
close 4503 on /tts) rather than wait for it.
Daphne's WebSocket protocol and access log get this service's hooks (oversized and
non-UTF-8 messages answered with a JSON error, API keys redacted): ttsplatform/daphne_hooks.py.
"""
from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ttsplatform.settings")

from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402
from django.core.asgi import get_asgi_application  # noqa: E402

# Static files (the admin's CSS and JS) are served by the app itself: one process, no web server needed.
django_asgi_app = ASGIStaticFilesHandler(get_asgi_application())

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from ttsplatform import daphne_hooks  # noqa: E402
from ttsplatform.routing import websocket_urlpatterns  # noqa: E402
from workers import backend  # noqa: E402

daphne_hooks.install()  # before Daphne builds its server, which it does after importing this module

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": URLRouter(websocket_urlpatterns),
    }
)

backend.current().on_web_start()  # embedded: start loading the engine, recover refinements
