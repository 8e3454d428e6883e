"""Fixtures for tests against the real Docker engine and a one-node Swarm.

`make test` starts dockerd and the Swarm (scripts/ensure-docker.sh); here we only connect.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.helpers import need


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
