"""Part 5: the rotation timeline, replica by replica, in both modes (bench/rotation-timeline.png).

    python -m bench.plot                 # from bench/rotation.json

One panel per mode; in each, one row per replica coloured by what the sampler saw, and
vertical lines for the flow's own log events (publish, install, restart / SIGHUP).
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from bench.common import ROOT

COLOURS = {
    "up-old": "#7fbf7f",
    "up-new": "#3a78c2",
    "sealed": "#f0a030",
    "unreachable": "#d62728",
    "error-response": "#8c1c1c",
}
LABELS = {
    "up-old": "unsealed, old leaf",
    "up-new": "unsealed, new leaf",
    "sealed": "sealed",
    "unreachable": "unreachable",
    "error-response": "error response",
}
MARKS = {
    "published": ("reloader: published", "#555555", ":"),
    "installed": ("distributor: installed", "#000000", "--"),
    "vault_restarted": ("distributor: rolling restart", "#d62728", "-."),
    "vault_signalled": ("distributor: SIGHUP", "#3a78c2", "-."),
}

# The entrypoint's own events, on the replica's row.
ROW_MARKS = {
    "tls_reloaded": ("entrypoint: TLS hot-reloaded", "x"),
    "unsealed": ("entrypoint: new task unsealed", "v"),
}


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


def representative(rotations: list[dict[str, Any]], mode: str) -> dict[str, Any] | None:
    """The rotation of ``mode`` with the median total downtime (the first one on ties)."""
    runs = [r for r in rotations if r["mode"] == mode]
    if not runs:
        return None

    def total(r: dict[str, Any]) -> float:
        return float(sum(s["down_s"] for s in r["slots"].values()))

    median = statistics.median_low([total(r) for r in runs])
    return next(r for r in runs if total(r) == median)


def render(doc: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    modes = ("restart", "sighup")
    fig, axes = plt.subplots(len(modes), 1, figsize=(12, 7), constrained_layout=True)
    iv = doc["intervals"]
    for ax, mode in zip(axes, modes, strict=True):
        rotation = representative(doc["rotations"], mode)
        if rotation is None:
            ax.set_title(f"{mode}: no rotation measured")
            continue
        slots = sorted(rotation["slots"], key=int)
        for row, slot in enumerate(slots):
            data = rotation["slots"][slot]
            for state, colour in COLOURS.items():
                bars = [(a, b - a) for a, b, s in data["segments"] if s == state]
                if bars:
                    ax.broken_barh(bars, (row - 0.35, 0.7), facecolors=colour)
            ax.text(
                data["segments"][0][0] if data["segments"] else 0,
                row + 0.42,
                f"down {data['down_s']:.2f} s, failed {data['failed']}/{data['requests']}",
                fontsize=7,
                va="bottom",
            )
        labelled: set[str] = set()
        for row, slot in enumerate(slots):
            for key, (label, marker) in ROW_MARKS.items():
                at = rotation["events"].get(f"{key}@{slot}")
                if at is None:
                    continue
                ax.plot(
                    [at],
                    [row],
                    marker=marker,
                    color="#000000",
                    markersize=7,
                    linestyle="none",
                    label=None if label in labelled else label,
                )
                labelled.add(label)
        for key, (label, colour, style) in MARKS.items():
            if key in rotation["events"]:
                ax.axvline(rotation["events"][key], color=colour, linestyle=style, label=label)
        ax.axvline(0, color="#000000", linewidth=1.5, label="new pair written (SWAG)")
        ax.set_yticks(range(len(slots)), [f"vault-{s}" for s in slots])
        ax.set_ylim(-0.6, len(slots) - 0.1)
        ax.set_xlabel("seconds since the new pair was written where SWAG writes it")
        served = rotation["all_served_after_s"]
        settled = rotation["all_settled_after_s"]
        ax.set_title(
            f"{mode} mode (rotation {rotation['index']} of {doc['rotations_per_mode']}, median"
            f" downtime): all serve the new leaf at {_s(served)}, all settled at {_s(settled)}",
            fontsize=10,
        )
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)
    handles = [Patch(facecolor=c, label=LABELS[s]) for s, c in COLOURS.items()]
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=8)
    fig.suptitle(
        "Certificate rotation in the Swarm stack, 3 raft replicas, seal-status every"
        f" {float(doc['sampler']['SAMPLER_INTERVAL']) * 1000:.0f} ms (reloader"
        f" {iv['RELOADER_INTERVAL']} s + settle {iv['RELOADER_SETTLE']} s, distributor"
        f" {iv['DISTRIBUTOR_INTERVAL']} s)",
        fontsize=10,
    )
    fig.savefig(out, dpi=110, bbox_inches="tight")
    plt.close(fig)


def main() -> None:
    doc = json.loads((ROOT / "bench" / "rotation.json").read_text())
    from bench.rotation import PNG_NAME

    render(doc, ROOT / "bench" / PNG_NAME)


if __name__ == "__main__":
    main()
