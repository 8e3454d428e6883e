"""cert-distributor as a real process: complete generations only, atomic swaps, the served check."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import load_pem_x509_certificate

from entrypoint import devpki
from entrypoint.distributor import DATA_LINK, GENERATION_PREFIX
from entrypoint.manifest import MANIFEST_NAME, read_manifest
from tests.helpers.distributor import Distributors, Shared
from tests.helpers.proc import Proc

CERT, KEY = "STAR.iklim.co.full.crt", "STAR.iklim.co_key.pem"
_SPKI = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.fixture(scope="module")
def ca() -> devpki.Issued:
    return devpki.make_ca()


@pytest.fixture
def shared(tmp_path: Path, ca: devpki.Issued) -> Shared:
    return Shared(tmp_path, ca)


@pytest.fixture
def distributors(tmp_path: Path, shared: Shared) -> Iterator[Distributors]:
    d = Distributors(tmp_path, shared, "0.05", VAULT_ENTRYPOINT_DISTRIBUTOR_VAULT_RELOAD="none")
    try:
        yield d
    finally:
        d.close()
        text = "\n".join(p.output() for p in d.procs)
        assert "PRIVATE KEY" not in text


def installed_fingerprint(node: Path) -> str | None:
    try:
        manifest = read_manifest(node / DATA_LINK)
    except Exception:
        return None
    return manifest.fingerprint if manifest else None


def wait_installed(node: Path, fingerprint: str, proc: Proc, deadline: float = 15.0) -> None:
    end = time.monotonic() + deadline
    while installed_fingerprint(node) != fingerprint:
        if proc.popen.poll() is not None or time.monotonic() > end:
            pytest.fail(f"{fingerprint} not installed within {deadline}s:\n{proc.output()[-4000:]}")
        time.sleep(0.02)


def pair_matches(cert_pem: bytes, key_pem: bytes) -> bool:
    cert = load_pem_x509_certificate(cert_pem)
    key = serialization.load_pem_private_key(key_pem, password=None)
    return cert.public_key().public_bytes(*_SPKI) == key.public_key().public_bytes(*_SPKI)


class Reader(threading.Thread):
    """Reads the pair from the node dir as fast as it can, the two ways a reader can."""

    def __init__(self, node: Path) -> None:
        super().__init__(daemon=True)
        self.node = node
        self.stop = threading.Event()
        self.pairs = 0
        self.generations: set[str] = set()
        self.mismatches: list[str] = []
        self.errors: list[str] = []

    def read_snapshot(self) -> None:
        """Open ``..data`` once, then both files relative to it: one generation by design."""
        try:
            fd = os.open(self.node / DATA_LINK, os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError:
            return
        try:
            parts = []
            for name in (CERT, KEY):
                f = os.open(name, os.O_RDONLY, dir_fd=fd)
                with os.fdopen(f, "rb") as handle:
                    parts.append(handle.read())
        except FileNotFoundError:
            return  # the generation was pruned under us: a retry, never a mix
        finally:
            os.close(fd)
        self.check(parts[0], parts[1], "snapshot")

    def read_stable_names(self) -> None:
        """The stable names, as Vault opens them; a swap in between shows in ``..data``."""
        try:
            before = os.readlink(self.node / DATA_LINK)
            cert_pem = (self.node / CERT).read_bytes()
            key_pem = (self.node / KEY).read_bytes()
            after = os.readlink(self.node / DATA_LINK)
        except FileNotFoundError:
            return
        if before == after:
            self.generations.add(before)
            self.check(cert_pem, key_pem, f"stable names in {before}")

    def check(self, cert_pem: bytes, key_pem: bytes, how: str) -> None:
        try:
            ok = pair_matches(cert_pem, key_pem)
        except ValueError as exc:
            self.errors.append(f"{how}: unparsable ({exc})")
            return
        self.pairs += 1
        if not ok:
            self.mismatches.append(how)

    def run(self) -> None:
        while not self.stop.is_set():
            self.read_snapshot()
            self.read_stable_names()


def test_concurrent_reader_never_sees_a_mismatched_pair(
    distributors: Distributors, shared: Shared
) -> None:
    node = distributors.node
    shared.publish()
    proc = distributors.start()
    first = read_manifest(shared.dir)
    assert first is not None
    wait_installed(node, first.fingerprint, proc)

    reader = Reader(node)
    reader.start()
    try:
        for days in range(91, 121):
            shared.publish(days)
            manifest = read_manifest(shared.dir)
            assert manifest is not None
            wait_installed(node, manifest.fingerprint, proc)
    finally:
        reader.stop.set()
        reader.join(timeout=30)
    assert proc.output().count("event=installed") == 31
    assert reader.mismatches == []
    assert reader.errors == []
    assert reader.pairs > 100
    assert len(reader.generations) > 5
    # Old generations are pruned: the current one and one for late readers.
    generations = [p for p in node.iterdir() if p.name.startswith(GENERATION_PREFIX)]
    assert len(generations) == 2
    assert all((node / n).is_symlink() for n in (CERT, KEY, MANIFEST_NAME))


def test_half_written_generation_not_installed(
    distributors: Distributors, shared: Shared, ca: devpki.Issued
) -> None:
    node = distributors.node
    old = shared.publish()
    proc = distributors.start()
    proc.wait_for(r"event=installed ")
    assert (node / KEY).read_bytes() == old.key_pem

    newer = devpki.make_leaf(ca, days=120)
    (shared.dir / CERT).write_bytes(devpki.full_chain(newer, ca))  # cert new, manifest not
    proc.wait_for(r"event=not_installed .*half-written")
    assert (node / KEY).read_bytes() == old.key_pem
    assert (node / CERT).read_bytes() == devpki.full_chain(old, ca)

    (shared.dir / CERT).unlink()  # storage flaps: a file missing
    proc.wait_for(r"event=not_installed .*does not exist")
    assert (node / KEY).read_bytes() == old.key_pem

    shared.publish(days=121)
    proc.wait_for(r"event=recovered step=sync")
    proc.wait_for(r"event=installed ", count=2)
    assert installed_fingerprint(node) == read_manifest(shared.dir).fingerprint  # type: ignore[union-attr]

    proc.signal(signal.SIGTERM)
    assert proc.wait_exit(15) == 0
    assert "event=stopped signal=15" in proc.output()


def test_missing_source_mount(distributors: Distributors, shared: Shared) -> None:
    code, output = distributors.once(
        VAULT_ENTRYPOINT_DISTRIBUTOR_SOURCE_DIR=str(shared.dir / "not-mounted")
    )
    assert code == 66, output
    assert "storage not mounted?" in output
    assert not distributors.node.exists()


def test_docker_unreachable_installs_nothing(
    distributors: Distributors, shared: Shared, tmp_path: Path
) -> None:
    shared.publish()
    code, output = distributors.once(
        "--vault-reload",
        "sighup",
        "--docker-timeout",
        "2",
        DOCKER_HOST=f"unix://{tmp_path}/no-docker.sock",
    )
    assert code == 69, output
    assert "event=not_installed" in output
    assert "Docker engine unreachable" in output
    assert not distributors.node.exists()


class TLSServer(threading.Thread):
    """A stand-in for Vault's listener: serves whatever pair it was last loaded with."""

    def __init__(self, cert: Path, key: Path) -> None:
        super().__init__(daemon=True)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.sni: list[str | None] = []
        self.load(cert, key)
        self.closing = threading.Event()

    def load(self, cert: Path, key: Path) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        context.sni_callback = lambda s, name, c: self.sni.append(name)  # type: ignore[assignment,func-returns-value]
        self.context = context

    def run(self) -> None:
        self.sock.settimeout(0.2)
        while not self.closing.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            conn.settimeout(5)
            try:
                with self.context.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(1)
            except (OSError, ssl.SSLError):
                pass

    def close(self) -> None:
        self.closing.set()
        self.join(timeout=10)
        self.sock.close()


def test_served_certificate_check(
    distributors: Distributors, shared: Shared, ca: devpki.Issued, tmp_path: Path
) -> None:
    old = tmp_path / "old"
    devpki.write_pair(old, CERT, KEY, devpki.make_leaf(ca, days=30), ca)
    server = TLSServer(old / CERT, old / KEY)
    server.start()
    try:
        shared.publish()
        addr = f"https://127.0.0.1:{server.port}"
        code, output = distributors.once("--check-timeout", "1", VAULT_ADDR=addr)
        assert code == 13, output
        assert "event=installed" in output
        assert "event=reload_failed" in output
        assert "ServedCertificateMismatch" in output
        assert "vault.iklim.co" in server.sni  # SNI from the wildcard SAN

        # Vault picks the new pair up (as after its restart): the retry confirms it.
        node = distributors.node
        server.load(node / CERT, node / KEY)
        code, output = distributors.once("--check-timeout", "5", VAULT_ADDR=addr)
        assert code == 0, output
        assert "event=installed" not in output
        assert "event=vault_serving" in output
        # Confirmed once: the next pass neither reloads nor checks again.
        code, output = distributors.once("--check-timeout", "5", VAULT_ADDR=addr)
        assert code == 0
        assert "event=vault_serving" not in output
    finally:
        server.close()
