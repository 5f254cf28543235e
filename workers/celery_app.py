"""The Celery application of distributed mode.

Run a worker with (see `make run-distributed`):

    celery -A workers.celery_app worker -P threads -c $TTS_WORKER_STREAMS -Q synthesis,clone,batch

One worker process holds one engine, loaded and warmed before it takes a task. With
``-Q synthesis`` it also takes live streams off a Redis list, TTS_WORKER_STREAMS at once in
threads of its own (workers/stream_queue.py); Celery's ``-c`` threads run clones and
refinements. Configuration is Django's (CELERY_* settings).
"""
from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ttsplatform.settings")

app = Celery("ttsplatform")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.imports = ("workers.tasks",)

# Worker lifecycle hooks (engine load, registration, drain on SIGTERM) live with the runtime.
import workers.worker_runtime  # noqa: E402,F401
