"""Unseal latency: listener accepting -> server reports unsealed, over repeated restarts.

Contenders, each restarting the same sealed single-node OpenBao server:
  ours        vault-entrypoint run (server + retry-unseal loop)
  shell-loop  server started directly + `until bao operator unseal "$KEY"; do sleep 5; done`
  poll-5s     server started directly + a fixed 5-second polling unsealer (bank-vaults' default)
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from bench.common import Bench, Watcher, stop
from entrypoint.devserver import clean_env

ENTRY = Path(sys.executable).parent / "vault-entrypoint"

POLLER = r"""
import http.client, json, os, socket, ssl, time
ctx = ssl.create_default_context(cafile=os.environ["CA"])
def call(method, path, body=None):
    name, port = os.environ["NAME"], int(os.environ["PORT"])
    conn = http.client.HTTPSConnection(name, port, context=ctx, timeout=2)
    conn.sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), 2),
                                server_hostname=name)
    conn.request(method, path, body=json.dumps(body) if body else None)
    return json.loads(conn.getresponse().read())
while True:
    try:
        if call("GET", "/v1/sys/seal-status")["sealed"]:
            call("PUT", "/v1/sys/unseal", {"key": open(os.environ["KEYFILE"]).read().strip()})
    except Exception:
        pass
    time.sleep(5)
"""


def _env(bench: Bench, **extra: str) -> dict[str, str]:
    env = clean_env()
    env.update(extra)
    return env


def run_ours(bench: Bench, log: Path) -> tuple[float, float]:
    node = bench.node
    env = _env(
        bench,
        VAULT_BINARY=bench.bao,
        VAULT_CONFIG_DIR=str(node.config_path),
        VAULT_CERTS_DIR=str(node.certs_dir),
        VAULT_UNSEAL_KEY_FILE=str(node.root / "vault_unseal_key"),
        VAULT_ADDR=node.addr,
    )
    with log.open("ab") as out:
        proc = subprocess.Popen([str(ENTRY), "run"], env=env, stdout=out, stderr=out)
    try:
        watcher = Watcher(node)
        up = watcher.listener_up(30)
        return up, watcher.unsealed(30)
    finally:
        stop(proc)


def run_baseline(bench: Bench, kind: str, log: Path) -> tuple[float, float]:
    node = bench.node
    key_file = node.root / "vault_unseal_key"
    server = node.start(bench.bao, log)
    if kind == "shell-loop":
        env = _env(
            bench,
            VAULT_ADDR=node.addr,
            VAULT_CACERT=str(node.ca_file),
            VAULT_TLS_SERVER_NAME=node.server_name,
            KEY=key_file.read_text().strip(),
            BAO=bench.bao,
        )
        script = 'until "$BAO" operator unseal "$KEY" >/dev/null 2>&1; do sleep 5; done'
        helper = subprocess.Popen(["sh", "-c", script], env=env)
    else:
        env = _env(
            bench,
            CA=str(node.ca_file),
            NAME=node.server_name,
            PORT=str(node.port),
            KEYFILE=str(key_file),
        )
        helper = subprocess.Popen([sys.executable, "-c", POLLER], env=env)
    try:
        watcher = Watcher(node)
        up = watcher.listener_up(30)
        return up, watcher.unsealed(30)
    finally:
        stop(helper)
        stop(server)


def measure(bench: Bench, runs: int, log: Path) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {"ours": [], "shell-loop": [], "poll-5s": []}
    for round_no in range(runs):
        order = list(results)
        order = order[round_no % 3 :] + order[: round_no % 3]  # rotate against drift
        for kind in order:
            if kind == "ours":
                up, unsealed = run_ours(bench, log)
            else:
                up, unsealed = run_baseline(bench, kind, log)
            results[kind].append(unsealed - up)
        print(
            f"round {round_no + 1}/{runs}: "
            + " ".join(f"{k}={v[-1] * 1000:.0f}ms" for k, v in results.items()),
            flush=True,
        )
    return results


if __name__ == "__main__":
    from bench.common import prepare

    work = Path(os.environ.get("BENCH_DIR", "/tmp/vault-entrypoint-bench"))
    bench = prepare(work / "unseal")
    data = measure(bench, int(os.environ.get("BENCH_RUNS", "3")), work / "unseal.log")
    for kind, values in data.items():
        print(kind, [round(v * 1000) for v in values])
    time.sleep(0)
