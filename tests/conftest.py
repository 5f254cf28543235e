"""Session fixtures: the running server, once per mode, and the real services it needs.

Every end-to-end test that takes ``server`` runs against both modes:
- embedded: one Daphne process, SQLite, in-memory channel layer, local disk;
- distributed: Daphne + two Celery worker processes, a private Redis server, a fresh
  PostgreSQL database and voice features in a real S3-compatible server (SeaweedFS).
"""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.s3server import S3Server, start_s3_server
from tests.server import RunningServer, start_server
from tests.services import PostgresDatabase, RedisServer, create_database, start_redis

MODES = ["embedded", "distributed"]
FEATURE_BUCKET = "tts-voices"


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    server = start_s3_server(tmp_path_factory.mktemp("s3"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = start_redis(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_db() -> Iterator[PostgresDatabase]:
    database = create_database()
    yield database
    database.drop()


def distributed_env(redis_server: RedisServer, database: PostgresDatabase, s3: S3Server, *, redis_db: int = 0,
                    bucket: str = FEATURE_BUCKET) -> dict[str, str]:
    """Settings for a distributed stack; stacks that run side by side need their own
    ``redis_db`` (queues, channels) and ``database``."""
    s3.create_bucket(bucket)
    return {
        **s3.env(),
        "TTS_REDIS_URL": redis_server.url.rsplit("/", 1)[0] + f"/{redis_db}",
        "TTS_DATABASE_URL": database.url,
        "TTS_FEATURE_STORE": f"s3://{bucket}/features",
    }


@pytest.fixture(scope="session", params=MODES)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
           s3_server: S3Server) -> Iterator[RunningServer]:
    mode = request.param
    env = s3_server.env()  # s3:// tone caches work in either mode
    if mode == "distributed":
        env = distributed_env(request.getfixturevalue("redis_server"), request.getfixturevalue("postgres_db"),
                              s3_server)
    running = start_server(tmp_path_factory.mktemp(f"server-{mode}"), mode=mode, extra_env=env)
    yield running
    running.stop()


#: unit modules that load the whole Kokoro model or run a real benchmark: seconds to a minute each
SLOW_MODULES = {
    "tests/bench/test_bench_smoke.py",
    *(f"tests/synthesis/engines/kokoro/test_{name}.py"
      for name in ("kokoro_engine", "kokoro_graph", "kokoro_refine", "listening_guard", "voice_embeddings",
                   "voice_pack")),
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Marks, and the groups of ``pytest -n N --dist loadgroup`` (`make test`).

    ``e2e``: everything under tests/e2e (real servers over real sockets); ``slow``: the
    modules in SLOW_MODULES. `make test-fast` runs neither. Under xdist, what shares an
    expensive fixture stays on one worker: the tests of each mode's session server together,
    and every other module whole (its module-scoped stacks start once). The two modes run
    side by side."""
    for item in items:
        module = item.nodeid.split("::", 1)[0]
        if module.startswith("tests/e2e/"):
            item.add_marker(pytest.mark.e2e)
        if module in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)
        callspec = getattr(item, "callspec", None)
        mode = callspec.params.get("server") if callspec is not None else None
        item.add_marker(pytest.mark.xdist_group(f"server-{mode}" if mode in MODES else module))
