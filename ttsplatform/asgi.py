"""ASGI entry point: Django views for HTTP, the /tts consumer for WebSockets.

The engine starts loading in a background thread as soon as the process starts;
/health answers 503 until it is loaded and warm, and so do early requests (503 + Retry-After,
close 4503 on /tts) rather than wait for it.
Daphne's WebSocket protocol and access log get this service's hooks (oversized and
non-UTF-8 messages answered with a JSON error, API keys redacted): ttsplatform/daphne_hooks.py.
"""
from __future__ import annotations

import os
import threading

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ttsplatform.settings")

from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402
from django.core.asgi import get_asgi_application  # noqa: E402

# Static files (the admin's CSS and JS) are served by the app itself: one process, no web server needed.
django_asgi_app = ASGIStaticFilesHandler(get_asgi_application())

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from synthesis.engines.registry import start_loading  # noqa: E402
from ttsplatform import daphne_hooks  # noqa: E402
from ttsplatform.routing import websocket_urlpatterns  # noqa: E402
from voices.refine import recover_after_restart  # noqa: E402

daphne_hooks.install()  # before Daphne builds its server, which it does after importing this module

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": URLRouter(websocket_urlpatterns),
    }
)

from django.conf import settings  # noqa: E402

if settings.TTS_PRELOAD_ENGINE and not settings.DISTRIBUTED:  # workers hold the engine in distributed mode
    start_loading()

if not settings.DISTRIBUTED:  # one process: any voice still "refining" lost its refinement with the last one
    threading.Thread(target=recover_after_restart, name="refine-recovery", daemon=True).start()
