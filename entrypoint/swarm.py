"""Docker Swarm service updates that change only what we mean to change."""

from __future__ import annotations

from typing import Any


def update_service_spec(
    client: Any,
    current: dict[str, Any],
    task_template: dict[str, Any] | None = None,
    labels: dict[str, str] | None = None,
) -> None:
    """Post the service's own spec back with ``task_template`` keys and ``labels`` replaced.

    docker-py's ``fetch_current_spec=True`` reads the spec with the engine's defaults filled
    in and writes them back; the service then differs from its stack file, and the next
    ``docker stack deploy`` rolls every task again. ``current`` is ``inspect_service`` output
    (without defaults); its version index makes a concurrent update fail "out of sequence".
    """
    spec = current["Spec"]
    template = {**spec.get("TaskTemplate", {}), **(task_template or {})}
    client.api.update_service(
        current["ID"],
        current["Version"]["Index"],
        task_template=template,
        name=spec.get("Name"),
        labels=spec.get("Labels") if labels is None else labels,
        mode=spec.get("Mode"),
        update_config=spec.get("UpdateConfig"),
        rollback_config=spec.get("RollbackConfig"),
        endpoint_spec=spec.get("EndpointSpec"),
        fetch_current_spec=False,
    )
