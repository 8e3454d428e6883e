from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark tests by directory, so `-m integration` / `-m swarm` select them."""
    for item in items:
        parts = Path(str(item.path)).relative_to(HERE).parts
        if parts[0] == "integration":
            item.add_marker(pytest.mark.integration)
        elif parts[0] == "swarm":
            item.add_marker(pytest.mark.swarm)
