"""Django settings. Every knob is an environment variable, listed with its default here
(and in the README's configuration table)."""
from __future__ import annotations

from pathlib import Path

from ttsplatform.env import envbool, envfloat, envint, envpaths, envstr

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
]

MIDDLEWARE = [
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

DATABASES = {
    "default": {
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

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels.layers.InMemoryChannelLayer",
        "CONFIG": {"capacity": envint("TTS_CHANNEL_CAPACITY", 1000, minimum=10), "expiry": 60},
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
#: start loading the engine when the server process starts (else: on first use)
TTS_PRELOAD_ENGINE = envbool("TTS_PRELOAD_ENGINE", True)

# --- Streams -----------------------------------------------------------------------
TTS_MAX_STREAMS = envint("TTS_MAX_STREAMS", 16, minimum=1)
TTS_MAX_TEXT_CHARS = envint("TTS_MAX_TEXT_CHARS", 20000, minimum=100)
TTS_WS_IDLE_TIMEOUT = envfloat("TTS_WS_IDLE_TIMEOUT", 300.0)

# --- Voices and cloning ------------------------------------------------------------
TTS_FEATURE_CACHE_SIZE = envint("TTS_FEATURE_CACHE_SIZE", 64, minimum=1)
TTS_CLONE_WORKERS = envint("TTS_CLONE_WORKERS", 1, minimum=1)
#: clones that may wait for a clone worker; more get 429
TTS_CLONE_QUEUE = envint("TTS_CLONE_QUEUE", 8, minimum=0)
TTS_PROMPT_MIN_SECONDS = envfloat("TTS_PROMPT_MIN_SECONDS", 1.0)
TTS_PROMPT_MAX_SECONDS = envfloat("TTS_PROMPT_MAX_SECONDS", 30.0)
TTS_PROMPT_SILENCE_DBFS = envfloat("TTS_PROMPT_SILENCE_DBFS", -50.0)
#: ':'-separated directories that client-supplied local paths (prompt_audio, cache_dir,
#: cache_path) must lie in. Unset = open mode: any path the process may read or write.
TTS_PATH_ROOTS = envpaths("TTS_PATH_ROOTS")
TTS_ALLOW_PRIVATE_URLS = envbool("TTS_ALLOW_PRIVATE_URLS", False)
TTS_URL_TIMEOUT = envfloat("TTS_URL_TIMEOUT", 10.0)
TTS_CACHE_MAX_BYTES = envint("TTS_CACHE_MAX_BYTES", 512 * 1024 * 1024, minimum=1024)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": envstr("TTS_LOG_LEVEL", "INFO")},
    "loggers": {"django.channels.server": {"level": "WARNING"}, "daphne": {"level": "WARNING"}},
}
