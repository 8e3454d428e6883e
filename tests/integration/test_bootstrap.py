"""`vault-entrypoint bootstrap` against a real, uninitialized OpenBao server and the real Docker
engine: the secret is created on the running Swarm (unique names, removed afterwards)."""

from __future__ import annotations

import os
import secrets as pysecrets
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from entrypoint import bootstrap, keystore
from entrypoint.cli import connector_for, vault_target
from entrypoint.devserver import LocalNode
from entrypoint.errors import DockerUnavailable
from tests.integration.conftest import KNOWN, Launcher, Servers


@pytest.fixture
def prefix(swarm: Any) -> Iterator[str]:
    """A unique secret prefix; every secret created under it is removed afterwards."""
    name = f"vetest-unseal-{pysecrets.token_hex(4)}"
    try:
        yield name
    finally:
        for secret in swarm.secrets.list(filters={"name": name}):
            if secret.name.startswith(name + "-"):
                secret.remove()


def _ours(client: Any, prefix: str) -> list[Any]:
    return [s for s in client.secrets.list(filters={"name": prefix}) if s.name.startswith(prefix)]


def _args(tmp_path: Path, prefix: str, *extra: str) -> list[str]:
    return [
        "bootstrap",
        "--secret-prefix",
        prefix,
        "--service",
        f"{prefix}-no-such-service",
        "--backup-dir",
        str(tmp_path / "backup"),
        "--wait",
        "30",
        *extra,
    ]


def _remember(*paths: Path) -> None:
    for path in paths:
        for line in path.read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                KNOWN.add(line.strip())


def test_bootstrap_initializes_creates_the_secret_then_changes_nothing(
    node: LocalNode,
    servers: Servers,
    launcher: Launcher,
    swarm: Any,
    prefix: str,
    tmp_path: Path,
) -> None:
    servers.start(node)
    (tmp_path / "backup").mkdir()
    token_file = tmp_path / "root-token"
    key_file = tmp_path / "unused"

    code, out = launcher.cli(
        node, key_file, *_args(tmp_path, prefix, "--root-token-file", str(token_file))
    )
    backups = sorted((tmp_path / "backup").glob("*.keys"))
    if backups:
        _remember(*backups)
    if token_file.exists():
        _remember(token_file)
    assert code == 0, out
    status = node.seal_status()
    assert status["initialized"] is True
    assert (status["t"], status["n"]) == (1, 1)

    created = _ours(swarm, prefix)
    assert len(created) == 1, out
    secret = created[0]
    assert secret.name.startswith(f"{prefix}-") and len(secret.name) == len(prefix) + 15
    assert secret.attrs["Spec"]["Labels"][keystore.ROLE_LABEL] == keystore.ROLE
    assert "event=secret_created" in out
    assert f"service {prefix}-no-such-service not found" in out

    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert token_file.read_text().strip()
    assert len(backups) == 1 and backups[0].name == f"{secret.name}.keys"
    assert stat.S_IMODE(backups[0].stat().st_mode) == 0o600
    shares = [ln for ln in backups[0].read_text().splitlines() if not ln.startswith("#")]
    assert len(shares) == 1
    # Bootstrap unsealed the node it initialized (the cluster can form before the secret
    # reaches the replicas) ...
    assert status["sealed"] is False
    assert "event=unsealed_after_init shares=1" in out
    # ... and the stored share is Vault's key: sealed again, it unseals the server.
    code_, _ = node.api("PUT", "/v1/sys/seal", token=token_file.read_text().strip())
    assert code_ == 204 and node.seal_status()["sealed"] is True
    code_, doc = node.api("PUT", "/v1/sys/unseal", {"key": shares[0]})
    assert code_ == 200 and doc["sealed"] is False

    # Second run: nothing initialized, no new secret, no token file written.
    second_token = tmp_path / "root-token-2"
    code, out = launcher.cli(
        node, key_file, *_args(tmp_path, prefix, "--root-token-file", str(second_token))
    )
    assert code == 0, out
    assert "already initialized" in out and "nothing initialized" in out
    assert "event=already_initialized" in out and secret.name in out
    assert [s.id for s in _ours(swarm, prefix)] == [secret.id]
    assert not second_token.exists()
    assert sorted((tmp_path / "backup").glob("*.keys")) == backups


def test_threshold_above_one_puts_the_threshold_shares_in_the_secret(
    node: LocalNode,
    servers: Servers,
    launcher: Launcher,
    swarm: Any,
    prefix: str,
    tmp_path: Path,
) -> None:
    servers.start(node)
    (tmp_path / "backup").mkdir()
    code, out = launcher.cli(
        node,
        tmp_path / "unused",
        *_args(tmp_path, prefix, "--shares", "3", "--threshold", "2", "--print-root-token"),
    )
    [backup] = sorted((tmp_path / "backup").glob("*.keys"))
    _remember(backup)
    token_line = [ln for ln in out.splitlines() if ln.startswith("root token: ")]
    assert len(token_line) == 1
    KNOWN.add(token_line[0].split(": ", 1)[1])
    launcher.outputs[-1] = out.replace(token_line[0], "root token: <printed on request>")
    assert code == 0, out
    assert node.seal_status()["t"] == 2
    # Unsealed with exactly the threshold's shares (the ones the secret holds).
    assert node.seal_status()["sealed"] is False
    assert "event=unsealed_after_init shares=2" in out
    shares = [ln for ln in backup.read_text().splitlines() if not ln.startswith("#")]
    assert len(shares) == 3
    assert (
        bootstrap.secret_payload(tuple(bootstrap.Secret(s) for s in shares), 2)
        .decode()
        .splitlines()
        == shares[:2]
    )
    assert "event=root_token" not in out  # the token went to stdout only


def test_docker_unreachable_initializes_nothing(
    node: LocalNode, servers: Servers, launcher: Launcher, tmp_path: Path
) -> None:
    servers.start(node)
    (tmp_path / "backup").mkdir()
    token_file = tmp_path / "root-token"
    code, out = launcher.cli(
        node,
        tmp_path / "unused",
        *_args(tmp_path, "vetest-unseal-nodocker", "--root-token-file", str(token_file)),
        DOCKER_HOST=f"unix://{tmp_path}/no-docker.sock",
    )
    assert code == DockerUnavailable.exit_code, out
    assert node.seal_status()["initialized"] is False
    assert not token_file.exists()
    assert list((tmp_path / "backup").iterdir()) == []


def test_an_existing_token_file_or_unwritable_backup_dir_initializes_nothing(
    node: LocalNode, servers: Servers, launcher: Launcher, tmp_path: Path
) -> None:
    servers.start(node)
    token_file = tmp_path / "root-token"
    token_file.write_text("keep me\n")
    (tmp_path / "backup").mkdir()
    code, out = launcher.cli(
        node,
        tmp_path / "unused",
        *_args(tmp_path, "vetest-unseal-x", "--root-token-file", str(token_file)),
    )
    assert code == 78, out
    assert "already exists" in out
    assert token_file.read_text() == "keep me\n"
    code, out = launcher.cli(
        node,
        tmp_path / "unused",
        "bootstrap",
        "--secret-prefix",
        "vetest-unseal-x",
        "--backup-dir",
        str(tmp_path / "missing"),
        "--print-root-token",
        "--wait",
        "30",
    )
    assert code == 78, out
    assert "not writable" in out
    assert node.seal_status()["initialized"] is False


def test_a_secret_that_cannot_be_created_leaves_a_rescue_file_and_fails_loudly(
    node: LocalNode,
    servers: Servers,
    swarm: Any,
    prefix: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import docker.errors

    servers.start(node)
    backup_dir = tmp_path / "backup"
    backup_dir.mkdir()

    def refuse(*args: object, **kwargs: object) -> None:
        raise docker.errors.APIError("secret store full")

    monkeypatch.setattr(bootstrap, "create_secret", refuse)
    connector = connector_for(
        vault_target(
            node.addr,
            node.ca_file,
            None,
            False,
            node.certs_dir,
            node.cert_name,
            node.key_name,
            30.0,
        )
    )
    cfg = bootstrap.BootstrapConfig(
        target=connector.target,
        backup_dir=backup_dir,
        secret_prefix=prefix,
        service=f"{prefix}-none",
        root_token_file=tmp_path / "root-token",
        wait=30,
    )
    with pytest.raises(keystore.SecretStoreFailed) as failure:
        bootstrap.bootstrap(cfg, connector)
    [rescue] = sorted(backup_dir.glob("*.keys"))
    _remember(rescue, tmp_path / "root-token")
    assert str(rescue) in str(failure.value)
    assert stat.S_IMODE(rescue.stat().st_mode) == 0o600
    assert node.seal_status()["initialized"] is True
    assert _ours(swarm, prefix) == []
    share = next(ln for ln in rescue.read_text().splitlines() if not ln.startswith("#"))
    assert share not in str(failure.value)
    code, doc = node.api("PUT", "/v1/sys/unseal", {"key": share})
    assert code == 200 and doc["sealed"] is False
    assert os.stat(tmp_path / "root-token").st_size > 0
