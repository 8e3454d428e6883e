"""Wrapper cost: exec -> server process spawned, and resident memory once steady.

Contenders: the server started directly (no PID-1 wrapper), `tini --` (Debian's tini), and
`vault-entrypoint run` (which also validates the certificate pair before spawning).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench.common import Bench, Watcher, stop
from entrypoint.devserver import clean_env

ENTRY = Path(sys.executable).parent / "vault-entrypoint"
STAMP = """#!/bin/sh
date +%s%N > "{out}"
exec sleep 30
"""


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _wrapper_env(bench: Bench, binary: str) -> dict[str, str]:
    node = bench.node
    env = clean_env()
    env.update(
        VAULT_BINARY=binary,
        VAULT_CONFIG_DIR=str(node.config_path),
        VAULT_CERTS_DIR=str(node.certs_dir),
        VAULT_UNSEAL_KEY_FILE=str(node.root / "vault_unseal_key"),
        VAULT_ADDR=node.addr,
    )
    return env


def spawn_latency(bench: Bench, kind: str, work: Path) -> float:
    out = work / "stamp.out"
    out.unlink(missing_ok=True)
    stamp = work / "stamp.sh"
    stamp.write_text(STAMP.format(out=out))
    stamp.chmod(0o755)
    env = _wrapper_env(bench, str(stamp))
    argv = {
        "direct": [str(stamp)],
        "tini": [shutil.which("tini") or "tini", "-s", "--", str(stamp)],
        "ours": [str(ENTRY), "run"],
    }[kind]
    start = time.time_ns()
    proc = subprocess.Popen(
        argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 10
        while not (out.exists() and out.read_text().strip()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{kind}: server never spawned")
            time.sleep(0.001)
        return (int(out.read_text()) - start) / 1e9
    finally:
        os.killpg(proc.pid, 9)
        proc.wait(timeout=10)


def steady_rss_kb(bench: Bench, kind: str, log: Path) -> int:
    """RSS of the PID-1 wrapper, 3 s after the real server reported unsealed."""
    env = _wrapper_env(bench, bench.bao)
    node = bench.node
    if kind == "tini":
        argv = [
            shutil.which("tini") or "tini",
            "-s",
            "--",
            bench.bao,
            "server",
            f"-config={node.config_path}",
        ]
    else:
        argv = [str(ENTRY), "run"]
    with log.open("ab") as out:
        proc = subprocess.Popen(
            argv, env=clean_env() if kind == "tini" else env, stdout=out, stderr=out
        )
    try:
        watcher = Watcher(node)
        watcher.listener_up(30)
        if kind == "tini":
            key = (node.root / "vault_unseal_key").read_text().strip()
            node.api("PUT", "/v1/sys/unseal", {"key": key})
        watcher.unsealed(30)
        time.sleep(3)
        return _rss_kb(proc.pid)
    finally:
        stop(proc)


def measure(bench: Bench, runs: int, rss_runs: int, work: Path) -> dict[str, object]:
    spawn: dict[str, list[float]] = {"direct": [], "tini": [], "ours": []}
    for i in range(runs):
        for kind in list(spawn)[i % 3 :] + list(spawn)[: i % 3]:
            spawn[kind].append(spawn_latency(bench, kind, work))
    rss: dict[str, list[int]] = {"tini": [], "ours": []}
    for _ in range(rss_runs):
        for kind, values in rss.items():
            values.append(steady_rss_kb(bench, kind, work / "rss.log"))
    return {"spawn": spawn, "rss_kb": rss}


if __name__ == "__main__":
    from bench.common import prepare

    work = Path(os.environ.get("BENCH_DIR", "/tmp/vault-entrypoint-bench"))
    bench = prepare(work / "cost")
    result = measure(bench, 6, 1, work / "cost")
    print(result)
