"""`vault-entrypoint verify` against docker-stack-vault.yml on the real Swarm: healthy, then
a stale certificate served, then the distributor scaled to zero."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from entrypoint import devpki
from entrypoint.config import DEFAULT_CERT_NAME, DEFAULT_KEY_NAME
from entrypoint.devserver import clean_env
from tests.helpers.proc import ENTRYPOINT
from tests.swarm.stack import SERVER_NAME, eventually
from tests.swarm.test_bootstrap import Deployed, uninitialized_stack

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def healthy(
    swarm: Any, vault_image: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployed]:
    """The stack bootstrapped by our own command: one replica, unsealed."""
    with uninitialized_stack(swarm, vault_image, tmp_path_factory.mktemp("verify")) as state:
        _no_vault_healthcheck_on_companions(state)
        code, out = state.run("--root-token-file", str(state.token_file))
        assert code == 0, out + state.stack.logs()
        # A renewal through the whole flow: SWAG -> reloader -> distributor -> Vault restarted.
        state.stack.write_swag(state.stack.new_leaf())
        eventually(
            lambda: verify(state)[0] == 0, 240, "verify to pass after the renewal", interval=3
        )
        yield state


def _no_vault_healthcheck_on_companions(state: Deployed) -> None:
    """The companions run from the Vault image; the stack must switch off its HEALTHCHECK
    (`vault-entrypoint health` on 127.0.0.1:8200), or Swarm restarts them as unhealthy."""
    for short in ("cert-reloader", "cert-distributor"):
        service = state.stack.client.services.get(state.stack.service(short))
        spec = service.attrs["Spec"]["TaskTemplate"]["ContainerSpec"]
        assert (spec.get("Healthcheck") or {}).get("Test") == ["NONE"], short


def verify(state: Deployed, *args: str, certs_dir: Path | None = None) -> tuple[int, str, str]:
    stack = state.stack
    result = subprocess.run(
        [
            str(ENTRYPOINT),
            "verify",
            "--vault-service",
            stack.service("vault"),
            "--reloader-service",
            stack.service("cert-reloader"),
            "--distributor-service",
            stack.service("cert-distributor"),
            "--certs-dir",
            str(certs_dir or stack.node_dir),
            "--cacert",
            str(state.ca_file),
            "--tls-server-name",
            SERVER_NAME,
            *args,
        ],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    state.outputs.append(result.stdout + result.stderr)
    return result.returncode, result.stdout, result.stderr


def _running(state: Deployed, short: str) -> int:
    tasks = state.stack.client.api.tasks(
        filters={"service": state.stack.service(short), "desired-state": "running"}
    )
    return sum(1 for t in tasks if t["Status"]["State"] == "running")


def test_verify_passes_on_a_healthy_stack(healthy: Deployed) -> None:
    eventually(lambda: _running(healthy, "cert-reloader") == 1, 120, "the reloader running")
    eventually(lambda: _running(healthy, "cert-distributor") == 1, 120, "the distributor running")
    code, out, err = verify(healthy)
    assert code == 0, out + err
    for name in (
        "reloader_running",
        "distributor_on_vault_nodes",
        "vault_tasks_running",
        "vault_unsealed",
        "served_certificate",
        "certificate_expiry",
        "reloader_log",
    ):
        assert any(line.startswith(name) and " ok " in line for line in out.splitlines()), out
    # The replica was found through its task's host-mode port.
    assert f"https://127.0.0.1:{healthy.port}" not in err
    code, out, err = verify(healthy, "--json")
    doc = json.loads(out)
    assert code == 0 and doc["ok"] is True and doc["failed"] == []
    [unsealed] = [c for c in doc["checks"] if c["name"] == "vault_unsealed"]
    assert unsealed["data"]["replicas"] == {f"https://127.0.0.1:{healthy.port}": "unsealed"}


def test_verify_names_the_certificate_check_when_a_stale_certificate_is_served(
    healthy: Deployed, tmp_path: Path
) -> None:
    # The node dir holds a newer pair than the one Vault serves (as when a reload failed).
    newer = tmp_path / "node-dir"
    devpki.write_pair(
        newer, DEFAULT_CERT_NAME, DEFAULT_KEY_NAME, healthy.stack.new_leaf(), healthy.stack.ca
    )
    code, out, err = verify(healthy, "--json", certs_dir=newer)
    doc = json.loads(out)
    assert code == 1, out + err
    assert doc["failed"] == ["served_certificate"]
    assert "failed checks: served_certificate" in err


def test_verify_names_the_expiry_check_when_the_certificate_expires_soon(
    healthy: Deployed,
) -> None:
    code, out, err = verify(healthy, "--min-days", "400")
    assert code == 1
    assert "failed checks: certificate_expiry" in err
    assert any(ln.startswith("certificate_expiry") and "FAIL" in ln for ln in out.splitlines())


def test_verify_names_the_distributor_check_when_it_is_scaled_to_zero(healthy: Deployed) -> None:
    service = healthy.stack.client.services.get(healthy.stack.service("cert-distributor"))
    # A global service cannot be scaled; a constraint no node meets leaves it with no task.
    service.update(constraints=["node.labels.vetest-no-such-label==true"])
    eventually(lambda: _running(healthy, "cert-distributor") == 0, 120, "no distributor task")
    code, out, err = verify(healthy)
    assert code == 1, out + err
    assert "failed checks: distributor_on_vault_nodes" in err
    line = next(ln for ln in out.splitlines() if ln.startswith("distributor_on_vault_nodes"))
    assert "FAIL" in line and "no running cert-distributor on Vault node(s)" in line
