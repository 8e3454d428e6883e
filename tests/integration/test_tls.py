"""TLS towards the local server, hot certificate reload and the certificate preflight."""

from __future__ import annotations

import datetime as dt
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from entrypoint import devpki, files
from entrypoint.certs import fingerprint, served_certificate
from entrypoint.devserver import LocalNode
from tests.integration.conftest import Launcher, Pki, Template, sealed

UNSEALED = r"event=unsealed "


def served_fingerprint(node: LocalNode) -> str:
    return fingerprint(served_certificate("127.0.0.1", node.port, node.server_name, timeout=5))


@pytest.mark.parametrize(
    ("trust", "expected"),
    [
        ("other-ca", r"TLS verification failed: self-signed certificate in certificate chain"),
        ("wrong-name", r"TLS verification failed: .*vault\.example\.org"),
    ],
)
def test_untrusted_server_gets_no_key_unless_skip_verify(
    node: LocalNode,
    templates: Callable[[int, int], Template],
    launcher: Launcher,
    key_path: Path,
    pki: Pki,
    tmp_path: Path,
    trust: str,
    expected: str,
) -> None:
    sealed(node, templates(1, 1), key_path)
    other_ca = tmp_path / "other-ca.pem"
    other_ca.write_bytes(pki.other_ca.cert_pem)
    env = (
        {"VAULT_CACERT": str(other_ca)}
        if trust == "other-ca"
        else {"VAULT_TLS_SERVER_NAME": "vault.example.org"}
    )
    proc = launcher.run(node, key_path, **env)
    match = proc.wait_for(r"level=error component=unseal event=vault_tls_untrusted reason=(.*)")
    assert re.search(expected, match.group(1)), match.group(1)
    time.sleep(1.5)  # three retry periods: an absence of unsealing needs a window
    assert node.seal_status()["sealed"] is True
    assert "event=unsealed" not in proc.output()
    assert proc.output().count("event=vault_tls_untrusted") == 1  # once per state change
    proc.stop()

    opted_out = launcher.run(node, key_path, VAULT_SKIP_VERIFY="true", **env)
    opted_out.wait_for(r"level=warning component=runner event=tls_verify_disabled")
    opted_out.wait_for(UNSEALED)
    assert node.seal_status()["sealed"] is False


def test_hot_reload_serves_new_pair_without_sealing(
    node: LocalNode,
    templates: Callable[[int, int], Template],
    launcher: Launcher,
    key_path: Path,
    pki: Pki,
) -> None:
    sealed(node, templates(1, 1), key_path)
    proc = launcher.run(node, key_path)
    proc.wait_for(UNSEALED)
    old = served_fingerprint(node)

    seen: list[bool] = []
    errors: list[str] = []
    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(0.05):
            try:
                seen.append(bool(node.seal_status(timeout=2)["sealed"]))
            except OSError as exc:
                errors.append(repr(exc))

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        # A broken pair (key of another certificate) first: rejected, not signalled.
        stranger = devpki.make_leaf(pki.ca)
        broken = devpki.make_leaf(pki.ca)
        files.atomic_write(node.certs_dir / node.key_name, stranger.key_pem, files.KEY_MODE)
        files.atomic_write(
            node.certs_dir / node.cert_name, devpki.full_chain(broken, pki.ca), files.CERT_MODE
        )
        proc.wait_for(r"level=error component=tlswatch event=tls_reload_rejected .*does not match")
        assert "tls_reload_signalled" not in proc.output()
        assert served_fingerprint(node) == old

        renewed = devpki.make_leaf(pki.ca, days=60)
        devpki.write_pair(node.certs_dir, node.cert_name, node.key_name, renewed, pki.ca)
        new_fp = fingerprint(renewed.cert.public_bytes(Encoding.DER))
        match = proc.wait_for(r"event=tls_reloaded old_sha256=(\w+) new_sha256=(\w+)", deadline=30)
        assert (match.group(1), match.group(2)) == (old, new_fp)
        assert served_fingerprint(node) == new_fp
        time.sleep(1.0)  # keep polling a little after the reload
    finally:
        stop.set()
        poller.join(timeout=10)
    assert len(seen) >= 10, (seen, errors)
    assert not any(seen), "the replica reported sealed during the reload"
    assert not errors, errors
    assert proc.output().count("event=unsealed ") == 1


CERT_CASES = ["mismatched-key", "expired", "garbage", "never-appears", "reversed-chain"]


@pytest.mark.parametrize("case", CERT_CASES)
def test_bad_certificates_stop_before_the_server_starts(
    node: LocalNode, launcher: Launcher, key_path: Path, pki: Pki, tmp_path: Path, case: str
) -> None:
    marker = tmp_path / "server-was-started"
    binary = tmp_path / "marker-server"
    binary.write_text(f"#!/bin/sh\ntouch {marker}\nsleep 60\n")
    binary.chmod(0o755)
    certs = node.certs_dir
    cert, key = certs / node.cert_name, certs / node.key_name
    if case == "mismatched-key":
        files.atomic_write(key, devpki.make_leaf(pki.ca).key_pem, files.KEY_MODE)
        expected, code = r"does not match the leaf certificate", 65
    elif case == "expired":
        old = devpki.make_leaf(
            pki.ca, days=30, valid_from=dt.datetime.now(dt.UTC) - dt.timedelta(days=60)
        )
        devpki.write_pair(certs, node.cert_name, node.key_name, old, pki.ca)
        expected, code = r"expired at", 65
    elif case == "garbage":
        cert.write_bytes(
            b"-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n"
        )
        expected, code = r"does not hold a PEM certificate chain", 65
    elif case == "reversed-chain":
        leaf = devpki.make_leaf(pki.ca)
        files.atomic_write(key, leaf.key_pem, files.KEY_MODE)
        files.atomic_write(cert, pki.ca.cert_pem + leaf.cert_pem, files.CERT_MODE)
        expected, code = r"belongs to certificate #2 .* the leaf must come first", 65
    else:
        cert.unlink()
        expected, code = r"did not appear within 1s", 66
    proc = launcher.run(node, key_path, VAULT_BINARY=str(binary), VAULT_ENTRYPOINT_CERTS_WAIT="1")
    assert proc.wait_exit(deadline=20) == code
    out = proc.output()
    assert re.search(r"level=error component=cli event=failed .*" + expected, out), out
    assert "event=server_started" not in out
    assert not marker.exists()


def test_certificates_arriving_late_are_waited_for(
    node: LocalNode,
    templates: Callable[[int, int], Template],
    launcher: Launcher,
    key_path: Path,
    pki: Pki,
) -> None:
    """A new node: the distributor syncs the pair after Vault's task has started."""
    sealed(node, templates(1, 1), key_path)
    for name in (node.cert_name, node.key_name):
        (node.certs_dir / name).unlink()
    proc = launcher.run(node, key_path, VAULT_ENTRYPOINT_CERTS_WAIT="30")
    proc.wait_for(r"level=warning component=runner event=certs_waiting")
    assert "event=server_started" not in proc.output()
    devpki.write_pair(node.certs_dir, node.cert_name, node.key_name, pki.leaf, pki.ca)
    proc.wait_for(r"event=certs_ok")
    proc.wait_for(UNSEALED)
