from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import need

HERE = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark tests by directory, so `-m integration` / `-m swarm` select them."""
    for item in items:
        parts = Path(str(item.path)).relative_to(HERE).parts
        if parts[0] == "integration":
            item.add_marker(pytest.mark.integration)
        elif parts[0] == "swarm":
            item.add_marker(pytest.mark.swarm)


# The real Docker engine, for the integration and swarm tests that need one.
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
