"""Django settings. Every knob is an environment variable, listed with its default here
(and in the README's configuration table)."""
from __future__ import annotations

from pathlib import Path

from core.env import envbool, envchoice, envfloat, envint, envpaths, envstr, postgres_settings, renamed
from core.logs import logging_config

BASE_DIR = Path(__file__).resolve().parent.parent

# --- Process -----------------------------------------------------------------------
SECRET_KEY = envstr("DJANGO_SECRET_KEY", "insecure-embedded-mode-key-change-me")
DEBUG = envbool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = [h for h in envstr("DJANGO_ALLOWED_HOSTS", "*").split(",") if h]

#: Where the embedded database, voice features, prompt audio and the assembled model live.
TTS_DATA_DIR = Path(envstr("TTS_DATA_DIR", str(BASE_DIR / "var"))).expanduser().resolve()
TTS_DATA_DIR.mkdir(parents=True, exist_ok=True)  # SQLite cannot create its own directory

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "voices",
    "synthesis",
    "tenants",
    "batches",
    "workers",  # no models: its ready() hands the mode's backend to voices and tenants (workers/apps.py)
    "api",  # no models: listed so that the admin's autodiscovery finds api/admin/
]

MIDDLEWARE = [
    "core.logs.request_id_middleware",  # first: every later log line carries the request id
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "ttsplatform.urls"
APPEND_SLASH = False

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

ASGI_APPLICATION = "ttsplatform.asgi.application"

# --- Mode ----------------------------------------------------------------------------
#: "embedded": one process, SQLite, in-memory channel layer, jobs in this process's threads.
#: "distributed": Daphne + Celery workers, Redis (broker and channel layer), PostgreSQL, S3.
TTS_MODE = envchoice("TTS_MODE", "embedded", ("embedded", "distributed"))
DISTRIBUTED = TTS_MODE == "distributed"
#: PostgreSQL, e.g. postgres://user:password@host:5432/dbname. Unset: SQLite in embedded
#: mode, postgres://postgres@127.0.0.1:5432/ttsplatform in distributed mode.
TTS_DATABASE_URL = envstr("TTS_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/ttsplatform" if DISTRIBUTED else "")
#: Redis: Celery broker, channel layer and per-job text streams (distributed mode).
TTS_REDIS_URL = envstr("TTS_REDIS_URL", "redis://127.0.0.1:6379/0")

#: Seconds a database connection is reused (0: a new connection per request or DB call).
#: Without reuse, every call from a WebSocket consumer opens a PostgreSQL connection on
#: Daphne's single database thread: at 16 streams that was most of its time.
TTS_DB_CONN_MAX_AGE = envint("TTS_DB_CONN_MAX_AGE", 60, minimum=0)

if TTS_DATABASE_URL:
    DATABASES = {"default": {**postgres_settings(TTS_DATABASE_URL), "CONN_HEALTH_CHECKS": True,
                             "CONN_MAX_AGE": TTS_DB_CONN_MAX_AGE}}
else:
    DATABASES = {
        "default": {
            "CONN_MAX_AGE": TTS_DB_CONN_MAX_AGE,
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": envstr("TTS_SQLITE_PATH", str(TTS_DATA_DIR / "db.sqlite3")),
            "OPTIONS": {
                # WAL lets the thread pool read while a clone writes; the timeout rides out short locks.
                "timeout": 20,
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
            },
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

#: Messages a consumer's channel may hold before senders get backpressure (ChannelFull).
TTS_CHANNEL_CAPACITY = envint("TTS_CHANNEL_CAPACITY", 1000, minimum=10)
if DISTRIBUTED:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "ttsplatform.channel_layer.FewerTripsRedisChannelLayer",
            "CONFIG": {
                # socket_timeout None: with redis-py >= 5 a finite default read timeout makes the
                # layer's blocking receive fail on an idle connection, closing idle WebSockets.
                "hosts": [{"address": TTS_REDIS_URL, "socket_timeout": None, "socket_connect_timeout": 5,
                           "health_check_interval": 10, "retry_on_timeout": True}],
                "capacity": TTS_CHANNEL_CAPACITY,
                "expiry": 60,
                "prefix": "tts:layer",
            },
        }
    }
else:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels.layers.InMemoryChannelLayer",
            "CONFIG": {"capacity": TTS_CHANNEL_CAPACITY, "expiry": 60},
        }
    }

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = TTS_DATA_DIR / "static"

# Request bodies: /clone carries base64 audio, so allow a bit more than the prompt cap.
TTS_PROMPT_MAX_BYTES = envint("TTS_PROMPT_MAX_BYTES", 20 * 1024 * 1024, minimum=1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = TTS_PROMPT_MAX_BYTES * 4 // 3 + 64 * 1024

# --- Engine ------------------------------------------------------------------------
TTS_ENGINE = envstr("TTS_ENGINE", "kokoro")
#: where the engine keeps its assembled model and derived caches (shareable between servers)
TTS_ENGINE_DIR = Path(envstr("TTS_ENGINE_DIR", str(TTS_DATA_DIR / "engine"))).expanduser().resolve()
TTS_ENGINE_THREADS = envint("TTS_ENGINE_THREADS", 2, minimum=1)
TTS_ENGINE_CONCURRENCY = envint("TTS_ENGINE_CONCURRENCY", 1, minimum=1)
#: where the model runs: auto (CUDA when ONNX Runtime has it, else CPU), cpu, or cuda (fails without it)
TTS_ENGINE_DEVICE = envchoice("TTS_ENGINE_DEVICE", "auto", ("auto", "cpu", "cuda"))
#: start loading the engine when the server process starts (else: on first use)
TTS_PRELOAD_ENGINE = envbool("TTS_PRELOAD_ENGINE", True)

# --- Streams -----------------------------------------------------------------------
TTS_MAX_STREAMS = envint("TTS_MAX_STREAMS", 16, minimum=1)
TTS_MAX_TEXT_CHARS = envint("TTS_MAX_TEXT_CHARS", 20000, minimum=100)
TTS_WS_IDLE_TIMEOUT = envfloat("TTS_WS_IDLE_TIMEOUT", 300.0)

# --- Voices and cloning ------------------------------------------------------------
TTS_FEATURE_CACHE_SIZE = envint("TTS_FEATURE_CACHE_SIZE", 64, minimum=1)
TTS_CLONE_WORKERS = envint("TTS_CLONE_WORKERS", 1, minimum=1)
#: clones that may wait for a clone worker; more get 429 (TTS_CLONE_QUEUE before: deprecated)
TTS_CLONE_MAX_WAITING = envint(renamed("TTS_CLONE_MAX_WAITING", "TTS_CLONE_QUEUE"), 8, minimum=0)
TTS_PROMPT_MIN_SECONDS = envfloat("TTS_PROMPT_MIN_SECONDS", 1.0)
TTS_PROMPT_MAX_SECONDS = envfloat("TTS_PROMPT_MAX_SECONDS", 30.0)
TTS_PROMPT_SILENCE_DBFS = envfloat("TTS_PROMPT_SILENCE_DBFS", -50.0)
#: ':'-separated directories that client-supplied local paths (prompt_audio, cache_dir,
#: cache_path) must lie in. Unset = open mode: any path the process may read or write.
TTS_PATH_ROOTS = envpaths("TTS_PATH_ROOTS")
TTS_ALLOW_PRIVATE_URLS = envbool("TTS_ALLOW_PRIVATE_URLS", False)
TTS_URL_TIMEOUT = envfloat("TTS_URL_TIMEOUT", 10.0)
TTS_CACHE_MAX_BYTES = envint("TTS_CACHE_MAX_BYTES", 512 * 1024 * 1024, minimum=1024)

# --- Clone refinement ----------------------------------------------------------------
#: After a quick clone, search for a closer voice in the background (engines with an
#: optional refine_features only). The voice is "refining" meanwhile and speaks with its
#: quick features; the refined ones replace them atomically when the search ends.
#: Off by default: in the quality benchmark it raised SIM but made 3 of 6 voices hard to
#: understand (bench/results/README-table-quality-refined.md); the guard needs an ASR check.
TTS_REFINE = envbool("TTS_REFINE", False)
#: Wall-time budget of one refinement, in seconds (the search also stops when it stalls).
TTS_REFINE_SECONDS = envfloat("TTS_REFINE_SECONDS", 120.0)
#: Embedded mode: refinements waiting for the one refine thread; past this, a new voice
#: keeps its quick features ("ready" at once). Distributed mode: tts.refine tasks on the
#: clone queue, dropped when unclaimed for this many seconds (TTS_REFINE_EXPIRES).
TTS_REFINE_QUEUE = envint("TTS_REFINE_QUEUE", 8, minimum=0)
TTS_REFINE_EXPIRES = envfloat("TTS_REFINE_EXPIRES", 900.0)

# --- Batch jobs --------------------------------------------------------------------
#: embedded mode: threads that run batch items (the engine runs them behind live streams)
TTS_BATCH_THREADS = envint("TTS_BATCH_THREADS", 1, minimum=1)
#: a running item whose run has not said it is alive for this long is taken over by another run
TTS_BATCH_LEASE_SECONDS = envfloat("TTS_BATCH_LEASE_SECONDS", 60.0)
#: how often expired jobs are deleted, and (distributed mode) items whose task was lost are queued again
TTS_BATCH_SWEEP_SECONDS = envfloat("TTS_BATCH_SWEEP_SECONDS", 30.0)
#: GET /batches/<id>/archive refuses (413) jobs whose files come to more than this
TTS_BATCH_ARCHIVE_MAX_BYTES = envint("TTS_BATCH_ARCHIVE_MAX_BYTES", 2 * 1024**3, minimum=1024)
#: batch callbacks may go to private, local or reserved addresses (default: as TTS_ALLOW_PRIVATE_URLS)
TTS_CALLBACK_ALLOW_PRIVATE_URLS = envbool("TTS_CALLBACK_ALLOW_PRIVATE_URLS", TTS_ALLOW_PRIVATE_URLS)
#: a callback that fails is retried, backing off from 1 s to 10 min, for this long after the job ended
TTS_CALLBACK_RETRY_SECONDS = envfloat("TTS_CALLBACK_RETRY_SECONDS", 86400.0)
#: how long one callback POST may take
TTS_CALLBACK_TIMEOUT = envfloat("TTS_CALLBACK_TIMEOUT", 10.0)

# --- Logs and metrics ------------------------------------------------------------------
#: "plain": one line per record, `` [rid=<request id>]`` appended when known. "json": one JSON
#: object per line (ts, level, logger, message, request_id, job_id, exc_info) for log pipelines.
TTS_LOG_FORMAT = envchoice("TTS_LOG_FORMAT", "plain", ("plain", "json"))
LOGGING = logging_config(envstr("TTS_LOG_LEVEL", "INFO"), TTS_LOG_FORMAT)
#: If set, GET /metrics requires `Authorization: Bearer <this>`. Unset: /metrics is open to
#: anyone who reaches the port (as /health is); set it on any server others can reach.
TTS_METRICS_TOKEN = envstr("TTS_METRICS_TOKEN", "")

# --- Tenants -------------------------------------------------------------------------
#: Require an API key on every request. Off (open mode, one default tenant) keeps clients
#: of the original API working; turn it on for any server others can reach.
TTS_REQUIRE_API_KEY = envbool("TTS_REQUIRE_API_KEY", False)
#: Local tone caches of key-holding tenants live under <this>/<tenant slug>/ (relative
#: cache paths are taken from there; anything outside is refused).
TTS_TENANT_CACHE_ROOT = Path(envstr("TTS_TENANT_CACHE_ROOT", str(TTS_DATA_DIR / "tenant-caches"))).expanduser().resolve()

# --- Storage -------------------------------------------------------------------------
#: Where voice features and prompt audio live: a local directory, or s3://bucket/prefix.
#: Default: <TTS_DATA_DIR>/voices. Distributed mode needs a store every worker can reach (S3).
TTS_FEATURE_STORE = envstr("TTS_FEATURE_STORE", "")
#: S3-compatible endpoint (unset: AWS). Credentials come from the usual AWS_ACCESS_KEY_ID /
#: AWS_SECRET_ACCESS_KEY variables (or any other boto3 credential source).
TTS_S3_ENDPOINT_URL = envstr("TTS_S3_ENDPOINT_URL", "")
TTS_S3_REGION = envstr("TTS_S3_REGION", "us-east-1")
TTS_S3_CONNECT_TIMEOUT = envfloat("TTS_S3_CONNECT_TIMEOUT", 5.0)
TTS_S3_READ_TIMEOUT = envfloat("TTS_S3_READ_TIMEOUT", 30.0)
#: ','-separated s3://bucket/prefix locations that client s3:// cache_dir / cache_path must
#: lie under (the S3 twin of TTS_PATH_ROOTS). Unset = open: any bucket the credentials reach.
TTS_S3_CACHE_ROOTS = tuple(r.strip() for r in envstr("TTS_S3_CACHE_ROOTS", "").split(",") if r.strip()) or None

# --- Distributed jobs ------------------------------------------------------------------
#: Celery queues: live synthesis and cloning are kept apart so clones never starve streams.
TTS_SYNTHESIS_QUEUE = envstr("TTS_SYNTHESIS_QUEUE", "synthesis")
TTS_CLONE_QUEUE_NAME = envstr("TTS_CLONE_QUEUE_NAME", "clone")
#: Celery queue of batch items (their own, so batch work never waits in front of streams)
TTS_BATCH_QUEUE = envstr("TTS_BATCH_QUEUE", "batch")
#: batch items one worker process runs at once (more would only queue for its engine)
TTS_WORKER_BATCH_ITEMS = envint("TTS_WORKER_BATCH_ITEMS", 1, minimum=1)
#: Streams one worker process runs at once (its thread pool; the engine has its own slots).
TTS_WORKER_STREAMS = envint("TTS_WORKER_STREAMS", 4, minimum=1)
#: A job no worker has picked up after this long fails with a clear error.
TTS_JOB_START_TIMEOUT = envfloat("TTS_JOB_START_TIMEOUT", 30.0)
#: A running job whose worker sends nothing (not even a heartbeat) for this long is lost.
TTS_JOB_HEARTBEAT_TIMEOUT = envfloat("TTS_JOB_HEARTBEAT_TIMEOUT", 3.0)
#: On SIGTERM a worker lets running streams finish for this long, then ends them with an error.
TTS_WORKER_DRAIN_SECONDS = envfloat("TTS_WORKER_DRAIN_SECONDS", 30.0)
#: How long /clone waits for a clone worker's answer before a 504.
TTS_CLONE_TIMEOUT = envfloat("TTS_CLONE_TIMEOUT", 120.0)

CELERY_BROKER_URL = envstr("TTS_CELERY_BROKER_URL", TTS_REDIS_URL)
CELERY_TASK_IGNORE_RESULT = True  # results travel over the channel layer, not a result backend
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ACKS_LATE = False  # replaying a half-spoken stream is not safe; tasks opt in one by one
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_MAX_RETRIES = None  # ride out a Redis restart
CELERY_BROKER_TRANSPORT_OPTIONS = {"socket_timeout": 10, "socket_connect_timeout": 5, "health_check_interval": 10}
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_WORKER_SEND_TASK_EVENTS = False
CELERY_TASK_DEFAULT_QUEUE = TTS_SYNTHESIS_QUEUE
