"""bootstrap and --rotate against docker-stack-vault.yml on the real Swarm: one Vault replica
(host-mode port on 127.0.0.1) built from the project's image, unsealed by its entrypoint from
the secret that bootstrap creates and swaps in."""

from __future__ import annotations

import contextlib
import os
import secrets as pysecrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from entrypoint import bootstrap, keystore
from entrypoint.cli import connector_for, vault_target
from tests.swarm.stack import SERVER_NAME, Stack

pytestmark = pytest.mark.timeout(900)


@dataclass
class Deployed:
    stack: Stack
    prefix: str
    port: int
    ca_file: Path
    backup_dir: Path
    token_file: Path
    outputs: list[str] = field(default_factory=list)

    @property
    def service(self) -> str:
        return self.stack.service("vault")

    def run(self, *args: str) -> tuple[int, str]:
        result = self.stack.run_bootstrap(
            f"https://127.0.0.1:{self.port}", self.ca_file, self.prefix, self.backup_dir, *args
        )
        out = result.stdout + result.stderr
        self.outputs.append(out)
        return result.returncode, out

    def rotate(self, keys_file: Path) -> tuple[int, str]:
        """The operator's `bootstrap --rotate` with the current shares and the root token."""
        return self.run(
            "--rotate", "--unseal-key-file", str(keys_file), "--token-file", str(self.token_file)
        )

    def connector(self) -> Any:
        return connector_for(
            vault_target(
                f"https://127.0.0.1:{self.port}",
                self.ca_file,
                SERVER_NAME,
                False,
                self.stack.node_dir,
                "STAR.iklim.co.full.crt",
                "STAR.iklim.co_key.pem",
                30.0,
            )
        )

    def cfg(self, **overrides: Any) -> bootstrap.BootstrapConfig:
        values: dict[str, Any] = {
            "target": self.connector().target,
            "backup_dir": self.backup_dir,
            "secret_prefix": self.prefix,
            "service": self.service,
            "wait": 60.0,
            "unseal_wait": 240.0,
        }
        values.update(overrides)
        return bootstrap.BootstrapConfig(**values)

    def ours(self) -> list[keystore.SecretVersion]:
        return keystore.secret_versions(self.stack.client, self.prefix)

    def mounted(self) -> dict[str, Any] | None:
        return keystore.mounted_secret(self.stack.client.api.inspect_service(self.service))

    def backup_of(self, version: keystore.SecretVersion) -> Path:
        return keystore.backup_path(self.backup_dir, version.name)

    def valid(self, keys_file: Path) -> bool:
        """Whether these shares are Vault's keys now (a rekey probe that changes nothing)."""
        token = bootstrap.Secret(self.token_file.read_text().strip())
        rotation = bootstrap.KeyRotation(self.connector(), token)
        status = self.connector().seal_status()
        keys = bootstrap.read_key_file(keys_file)
        return rotation.shares_valid(keys, (status.shares, status.threshold))

    def secret_texts(self) -> list[str]:
        texts = []
        for path in [self.token_file, *self.backup_dir.glob("*.keys")]:
            if path.exists():
                texts += [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
        return [t for t in texts if not t.startswith("#")]


@contextlib.contextmanager
def uninitialized_stack(swarm: Any, image: str, root: Path) -> Iterator[Deployed]:
    """The stack with one uninitialized replica, mounting a placeholder secret; removed after,
    with every secret under the test's own prefix."""
    stack = Stack(swarm, image, root / "stack")
    ca_file = root / "ca.pem"
    ca_file.write_bytes(stack.ca.cert_pem)
    (root / "backup").mkdir()
    state = Deployed(
        stack,
        f"vetest-unseal-{pysecrets.token_hex(3)}",
        int(stack.env["VAULT_PORT"]),
        ca_file,
        root / "backup",
        root / "root-token",
    )
    leaks: list[str] = []
    try:
        stack.prepare()
        stack.deploy(
            VAULT_UNSEAL_SECRET=stack.create_secret(b"not-initialized-yet\n"),
            VAULT_PORT_MODE="host",
        )
        yield state
    except BaseException:
        print(stack.all_logs())
        raise
    finally:
        try:
            leaks = [t[:6] for t in state.secret_texts() for out in state.outputs if t in out]
            stack.remove()
        finally:
            for secret in swarm.secrets.list(filters={"name": state.prefix}):
                if secret.name.startswith(state.prefix + "-"):
                    secret.remove()
    assert not leaks, f"key or token text in bootstrap output: {leaks}"


@pytest.fixture(scope="module")
def deployed(
    swarm: Any, vault_image: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployed]:
    with uninitialized_stack(swarm, vault_image, tmp_path_factory.mktemp("bootstrap")) as state:
        yield state


def test_bootstrap_initializes_and_the_replica_unseals_from_the_new_secret(
    deployed: Deployed,
) -> None:
    code, out = deployed.run("--root-token-file", str(deployed.token_file))
    assert code == 0, out + deployed.stack.logs()
    [version] = deployed.ours()
    mounted = deployed.mounted()
    assert mounted is not None
    assert mounted["SecretID"] == version.id
    assert mounted["File"]["Name"] == "vault_unseal_key"
    assert "event=replicas_unsealed" in out
    status = deployed.connector().seal_status()
    assert status.initialized and not status.sealed
    [replica] = deployed.stack.converged(1, 60, "the replica unsealed and healthy")
    assert deployed.stack.health(replica) == 0
    assert oct(os.stat(deployed.token_file).st_mode & 0o777) == "0o600"

    # A second run changes nothing.
    code, out = deployed.run("--root-token-file", str(deployed.token_file.with_name("again")))
    assert code == 0, out
    assert "nothing initialized" in out and f"mounts {version.name}" in out
    assert [v.id for v in deployed.ours()] == [version.id]
    assert deployed.mounted() == mounted
    assert not deployed.token_file.with_name("again").exists()


def test_rotation_replaces_the_key_and_removes_the_old_secret(deployed: Deployed) -> None:
    [old] = deployed.ours()
    old_keys = deployed.backup_of(old)
    code, out = deployed.rotate(old_keys)
    assert code == 0, out + deployed.stack.logs()
    [new] = deployed.ours()
    assert new.id != old.id
    assert deployed.mounted()["SecretID"] == new.id  # type: ignore[index]
    assert "event=old_secret_removed" in out
    with pytest.raises(Exception, match=r"not found|No such secret"):
        deployed.stack.client.secrets.get(old.id)
    # The old shares are no longer Vault's keys; the new secret's are (and they unsealed the
    # replica that Swarm restarted with the new secret).
    assert not deployed.valid(old_keys)
    assert deployed.valid(deployed.backup_of(new))
    deployed.stack.converged(1, 60, "the replica unsealed with the new secret")


def test_rotation_interrupted_after_the_rekey_is_completed_by_a_rerun(
    deployed: Deployed, monkeypatch: pytest.MonkeyPatch
) -> None:
    [old] = deployed.ours()
    old_keys = deployed.backup_of(old)

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt  # the operator's Ctrl-C right before the swap

    with monkeypatch.context() as patch:
        patch.setattr(bootstrap, "swap_secret", interrupted)
        cfg = deployed.cfg(rotate=True, unseal_key_file=old_keys, token_file=deployed.token_file)
        with pytest.raises(KeyboardInterrupt):
            bootstrap.rotate(cfg, deployed.connector())

    # Rekeyed, not swapped: the service still mounts the old secret, whose keys are no longer
    # valid; the new version exists with its backup, and that is the working key.
    versions = deployed.ours()
    assert len(versions) == 2 and versions[0].id == old.id
    pending = versions[1]
    assert deployed.mounted()["SecretID"] == old.id  # type: ignore[index]
    assert not deployed.valid(old_keys)
    assert deployed.valid(deployed.backup_of(pending))
    assert not deployed.connector().seal_status().sealed

    # The operator runs the very same command again.
    code, out = deployed.rotate(old_keys)
    assert code == 0, out + deployed.stack.logs()
    assert "event=rotation_resumed" in out
    assert [v.id for v in deployed.ours()] == [pending.id]
    assert deployed.mounted()["SecretID"] == pending.id  # type: ignore[index]
    deployed.stack.converged(1, 60, "the replica unsealed with the resumed secret")
    status = deployed.connector().seal_status()
    assert status.initialized and not status.sealed


def test_rotation_interrupted_before_verification_keeps_the_old_keys_and_reruns(
    deployed: Deployed, monkeypatch: pytest.MonkeyPatch
) -> None:
    [old] = deployed.ours()
    old_keys = deployed.backup_of(old)

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt  # stopped after the new secret was stored, before verification

    with monkeypatch.context() as patch:
        patch.setattr(bootstrap.KeyRotation, "verify", interrupted)
        cfg = deployed.cfg(rotate=True, unseal_key_file=old_keys, token_file=deployed.token_file)
        with pytest.raises(KeyboardInterrupt):
            bootstrap.rotate(cfg, deployed.connector())

    versions = deployed.ours()
    assert len(versions) == 2 and versions[0].id == old.id
    unused = versions[1]
    # Never verified: the mounted secret's keys are still the ones in force.
    assert deployed.valid(old_keys)
    assert not deployed.valid(deployed.backup_of(unused))

    code, out = deployed.rotate(old_keys)
    assert code == 0, out + deployed.stack.logs()
    assert "event=stale_secret_removed" in out and "event=rotation_resumed" not in out
    [final] = deployed.ours()
    assert final.id not in {old.id, unused.id}
    assert deployed.mounted()["SecretID"] == final.id  # type: ignore[index]
    assert deployed.valid(deployed.backup_of(final))
    deployed.stack.converged(1, 60, "the replica unsealed with the final secret")
