"""Health sampler that runs inside the stack's overlay network (as a one-task Swarm service).

Stdlib only: bench/rotation.py passes this file's text to the Vault image's Python
(`python -c`), so nothing has to be installed in the image. Configured by environment:

  SAMPLER_SERVICE    the Vault service's full name (resolved as tasks.<name>)
  SAMPLER_CA         the test CA (PEM) that verifies every replica
  SAMPLER_SNI        server name for TLS (vault.iklim.co)
  SAMPLER_INTERVAL   seconds between samples of one replica (0.05)
  SAMPLER_TIMEOUT    connect/read timeout of one request (1.0)
  SAMPLER_FP_EVERY   a fresh TLS handshake every N samples, to read the served leaf (4)
  SAMPLER_MAX        seconds after which the sampler exits on its own (safety; 1800)

Every second `tasks.<service>` is resolved through Docker's DNS; each IP is mapped to its
task (slot and task id) by reverse DNS. One thread per slot keeps one TLS connection to the
slot's current task and sends GET /v1/sys/seal-status every SAMPLER_INTERVAL. A slot whose
task left DNS (stopping, or restarted and not healthy yet) keeps being asked at its last
address: that is what a client that knew it would see. Only names are resolved: no address
is ever guessed or scanned.

Output, one JSON object per line on stdout:
  {"ev": "dns", "t": ..., "slot": 2, "ip": "10.0.1.5", "task": "abc..."}   a slot's new task
  {"ev": "s", "t": ..., "slot": 2, "task": "abc...", "r": "ok" | "sealed" | "http503" | "err",
   "ms": latency, "c": leaf sha256 prefix of the kept connection,
   "fp": leaf sha256 prefix of a fresh handshake (every SAMPLER_FP_EVERY samples),
   "retried": 1 when the kept connection had gone stale and a new one answered,
   "e": error class}
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import socket
import ssl
import sys
import threading
import time

PORT = 8200
FP_CHARS = 16


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


SERVICE = _env("SAMPLER_SERVICE", "vault")
SNI = _env("SAMPLER_SNI", "vault.iklim.co")
INTERVAL = float(_env("SAMPLER_INTERVAL", "0.05"))
TIMEOUT = float(_env("SAMPLER_TIMEOUT", "1.0"))
FP_EVERY = int(_env("SAMPLER_FP_EVERY", "4"))
MAX_SECONDS = float(_env("SAMPLER_MAX", "1800"))

_out = threading.Lock()
_targets: dict[int, tuple[str, str]] = {}
_targets_lock = threading.Lock()
_stop = threading.Event()


def emit(doc: dict[str, object]) -> None:
    line = json.dumps(doc, separators=(",", ":"))
    with _out:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def context() -> ssl.SSLContext:
    ctx = ssl.create_default_context(cadata=os.environ["SAMPLER_CA"])
    ctx.check_hostname = True
    return ctx


def resolve() -> dict[int, tuple[str, str]]:
    """slot -> (ip, task id) of the tasks Docker's DNS lists for the service now."""
    try:
        infos = socket.getaddrinfo(f"tasks.{SERVICE}", PORT, proto=socket.IPPROTO_TCP)
    except OSError:
        return {}
    pattern = re.compile(rf"{re.escape(SERVICE)}\.(\d+)\.([a-z0-9]+)")
    found: dict[int, tuple[str, str]] = {}
    for ip in sorted({str(info[4][0]) for info in infos}):
        try:
            name = socket.gethostbyaddr(ip)[0]
        except OSError:
            continue
        match = pattern.search(name)
        if match:
            found[int(match.group(1))] = (ip, match.group(2))
    return found


class Slot:
    def __init__(self, slot: int, ctx: ssl.SSLContext) -> None:
        self.slot = slot
        self.ctx = ctx
        self.conn: http.client.HTTPSConnection | None = None
        self.conn_ip = ""
        self.conn_fp = ""

    def _connect(self, ip: str) -> None:
        raw = socket.create_connection((ip, PORT), timeout=TIMEOUT)
        try:
            tls = self.ctx.wrap_socket(raw, server_hostname=SNI)
        except BaseException:
            raw.close()
            raise
        der = tls.getpeercert(binary_form=True) or b""
        conn = http.client.HTTPSConnection(ip, PORT, timeout=TIMEOUT, context=self.ctx)
        conn.sock = tls
        self.conn, self.conn_ip = conn, ip
        self.conn_fp = hashlib.sha256(der).hexdigest()[:FP_CHARS]

    def _close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.conn = None

    def _ask(self, ip: str) -> str:
        if self.conn is None or self.conn_ip != ip:
            self._close()
            self._connect(ip)
        assert self.conn is not None
        self.conn.request("GET", "/v1/sys/seal-status")
        resp = self.conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            return f"http{resp.status}"
        doc = json.loads(body)
        return "ok" if doc.get("initialized") and doc.get("sealed") is False else "sealed"

    def fresh_fingerprint(self, ip: str) -> str | None:
        try:
            with (
                socket.create_connection((ip, PORT), timeout=TIMEOUT) as raw,
                self.ctx.wrap_socket(raw, server_hostname=SNI) as tls,
            ):
                der = tls.getpeercert(binary_form=True) or b""
            return hashlib.sha256(der).hexdigest()[:FP_CHARS]
        except (OSError, ValueError):
            return None

    def sample(self, ip: str, task: str, count: int) -> None:
        started = time.monotonic()
        rec: dict[str, object] = {"ev": "s", "t": round(time.time(), 3), "slot": self.slot}
        rec["task"] = task
        reused = self.conn is not None and self.conn_ip == ip
        try:
            try:
                rec["r"] = self._ask(ip)
            except (OSError, http.client.HTTPException, ValueError):
                self._close()
                if not reused:
                    raise
                # A kept-alive connection that went stale: a client reconnects once.
                rec["r"] = self._ask(ip)
                rec["retried"] = 1
        except (OSError, http.client.HTTPException, ValueError) as exc:
            self._close()
            rec["r"] = "err"
            rec["e"] = type(exc).__name__
        rec["ms"] = round((time.monotonic() - started) * 1000, 1)
        if self.conn is not None:
            rec["c"] = self.conn_fp
        if count % FP_EVERY == 0:
            rec["fp"] = self.fresh_fingerprint(ip)
        emit(rec)

    def run(self) -> None:
        count = 0
        next_at = time.monotonic()
        while not _stop.is_set():
            with _targets_lock:
                ip, task = _targets[self.slot]
            self.sample(ip, task, count)
            count += 1
            next_at += INTERVAL
            delay = next_at - time.monotonic()
            if delay < 0:  # a slow sample (timeout): no burst to catch up
                next_at = time.monotonic()
                delay = 0
            _stop.wait(delay)


def main() -> None:
    ctx = context()
    threads: dict[int, threading.Thread] = {}
    end = time.monotonic() + MAX_SECONDS
    emit({"ev": "start", "t": round(time.time(), 3), "service": SERVICE, "interval": INTERVAL})
    while time.monotonic() < end:
        found = resolve()
        with _targets_lock:
            for slot, (ip, task) in found.items():
                if _targets.get(slot) != (ip, task):
                    _targets[slot] = (ip, task)
                    emit({"ev": "dns", "t": round(time.time(), 3), "slot": slot, "ip": ip,
                          "task": task})  # fmt: skip
        for slot in found:
            if slot not in threads:
                threads[slot] = threading.Thread(target=Slot(slot, ctx).run, daemon=True)
                threads[slot].start()
        _stop.wait(max(0.0, min(1.0, end - time.monotonic())))
    _stop.set()
    emit({"ev": "end", "t": round(time.time(), 3)})


if __name__ == "__main__":
    main()
