"""``vault-entrypoint verify``: the seed's verification checklist as one command, through the
Docker Engine API and TLS only (no shell-outs), with a non-zero exit naming the failed checks.

Replica addresses come from the Vault tasks' host-mode published ports (the node's address
plus the port), plus any ``--vault-addr`` given. The reference certificate is the file in the
node-local dir of the machine it runs on.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click

from entrypoint import logs
from entrypoint.config import DEFAULT_CERT_NAME
from entrypoint.errors import EntrypointError, ExitCode

log = logging.getLogger(__name__)

RELOADER_RUNNING = "reloader_running"
DISTRIBUTOR_ON_VAULT_NODES = "distributor_on_vault_nodes"
VAULT_TASKS_RUNNING = "vault_tasks_running"
VAULT_UNSEALED = "vault_unsealed"
SERVED_CERTIFICATE = "served_certificate"
CERTIFICATE_EXPIRY = "certificate_expiry"
RELOADER_LOG = "reloader_log"
_LEVEL = re.compile(r"\blevel=(\w+)|\"level\": \"(\w+)\"")
_EVENT = re.compile(r"\bevent=(\S+)|\"event\": \"([^\"]+)\"")


class VerificationFailed(EntrypointError):
    """One or more checks failed; the message names them."""

    exit_code = ExitCode.FAILURE


@dataclass(frozen=True)
class VerifyConfig:
    vault_service: str = "iklimco_vault"
    reloader_service: str = "iklimco_cert-reloader"
    distributor_service: str = "iklimco_cert-distributor"
    certs_dir: Path = Path("/opt/iklimco/ssl")
    cert_name: str = DEFAULT_CERT_NAME
    cacert: Path | None = None
    tls_server_name: str | None = None
    vault_addrs: tuple[str, ...] = ()
    vault_port: int = 8200
    min_days: float = 14.0
    log_lines: int = 20
    timeout: float = 10.0


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    data: dict[str, Any] = field(default_factory=dict)


# --- Docker: services, tasks, nodes ---------------------------------------------------------


def _tasks(client: Any, service: str) -> list[dict[str, Any]] | None:
    """Tasks Swarm wants running for ``service``; None when the service does not exist."""
    import docker.errors

    try:
        client.api.inspect_service(service)
    except docker.errors.NotFound:
        return None
    return list(client.api.tasks(filters={"service": service, "desired-state": "running"}))


def _node_names(client: Any) -> dict[str, tuple[str, str]]:
    """Node id -> (hostname, address)."""
    return {
        node["ID"]: (
            str(node.get("Description", {}).get("Hostname", node["ID"][:12])),
            str(node.get("Status", {}).get("Addr", "")),
        )
        for node in client.api.nodes()
    }


def _running(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [t for t in tasks if t.get("Status", {}).get("State") == "running"]


def check_reloader(client: Any, cfg: VerifyConfig) -> Check:
    tasks = _tasks(client, cfg.reloader_service)
    if tasks is None:
        return Check(RELOADER_RUNNING, False, f"service {cfg.reloader_service} not found")
    running = _running(tasks)
    if not running:
        states = sorted({t.get("Status", {}).get("State", "?") for t in tasks}) or ["no task"]
        return Check(RELOADER_RUNNING, False, f"not running ({', '.join(states)})")
    return Check(RELOADER_RUNNING, True, f"{len(running)} task(s) running")


def check_distributor(
    client: Any, cfg: VerifyConfig, vault_tasks: list[dict[str, Any]], nodes: dict[str, Any]
) -> Check:
    vault_nodes = {t["NodeID"] for t in _running(vault_tasks) if t.get("NodeID")}
    tasks = _tasks(client, cfg.distributor_service)
    if tasks is None:
        return Check(
            DISTRIBUTOR_ON_VAULT_NODES, False, f"service {cfg.distributor_service} not found"
        )
    covered = {t["NodeID"] for t in _running(tasks) if t.get("NodeID")}
    missing = sorted(nodes.get(n, (n[:12], ""))[0] for n in vault_nodes - covered)
    if missing:
        return Check(
            DISTRIBUTOR_ON_VAULT_NODES,
            False,
            f"no running cert-distributor on Vault node(s): {', '.join(missing)}",
            {"missing_nodes": missing},
        )
    if not vault_nodes:
        return Check(DISTRIBUTOR_ON_VAULT_NODES, False, "no running Vault task to compare with")
    return Check(
        DISTRIBUTOR_ON_VAULT_NODES, True, f"running on all {len(vault_nodes)} Vault node(s)"
    )


def check_vault_tasks(client: Any, cfg: VerifyConfig, tasks: list[dict[str, Any]] | None) -> Check:
    if tasks is None:
        return Check(VAULT_TASKS_RUNNING, False, f"service {cfg.vault_service} not found")
    service = client.api.inspect_service(cfg.vault_service)
    wanted = int(
        ((service["Spec"].get("Mode") or {}).get("Replicated") or {}).get("Replicas", 0) or 0
    )
    running = _running(tasks)
    not_running = [
        f"{t['ID'][:12]}={t.get('Status', {}).get('State')}" for t in tasks if t not in running
    ]
    if not_running or len(running) < max(wanted, 1):
        detail = f"{len(running)} of {max(wanted, len(tasks), 1)} running"
        if not_running:
            detail += f"; {', '.join(not_running)}"
        return Check(VAULT_TASKS_RUNNING, False, detail)
    return Check(VAULT_TASKS_RUNNING, True, f"{len(running)} task(s) running")


def replica_addrs(
    tasks: list[dict[str, Any]], nodes: dict[str, tuple[str, str]], cfg: VerifyConfig
) -> list[str]:
    """https://<node addr>:<host-mode port> of each running task, then the configured ones."""
    found: list[str] = []
    for task in _running(tasks):
        ports = (task.get("Status", {}).get("PortStatus") or {}).get("Ports") or []
        for port in ports:
            if port.get("TargetPort") == cfg.vault_port and port.get("PublishMode") == "host":
                host = nodes.get(task.get("NodeID", ""), ("", ""))[1] or "127.0.0.1"
                addr = f"https://{host}:{port['PublishedPort']}"
                if addr not in found:  # Docker lists a host port once per address family
                    found.append(addr)
    for addr in cfg.vault_addrs:
        if addr not in found:
            found.append(addr)
    return found


# --- TLS: seal status and the served certificate --------------------------------------------


def _reference(cfg: VerifyConfig) -> tuple[str, Any, str | None]:
    """(sha256, not_after, server name) of the leaf in the node dir."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from entrypoint.certs import fingerprint, parse_chain
    from entrypoint.errors import CertificateMissing

    path = cfg.certs_dir / cfg.cert_name
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise CertificateMissing(f"{path} cannot be read: {exc.strerror}") from None
    leaf = parse_chain(pem, str(path))[0]
    name = cfg.tls_server_name
    if name is None:
        try:
            sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
            dns = sans.value.get_values_for_type(x509.DNSName)
        except x509.ExtensionNotFound:
            dns = []
        # A wildcard gets a label filled in, as the entrypoint does.
        name = next((("vault" + n[1:]) if n.startswith("*.") else n for n in dns), None)
    der = leaf.public_bytes(serialization.Encoding.DER)
    return fingerprint(der), leaf.not_valid_after_utc, name


def check_unsealed(addrs: list[str], cfg: VerifyConfig, server_name: str | None) -> Check:
    from entrypoint.errors import VaultError
    from entrypoint.vault import Connector, VaultTarget

    if not addrs:
        return Check(
            VAULT_UNSEALED, False, "no replica address (no host-mode port; give --vault-addr)"
        )
    problems, states = [], {}
    for addr in addrs:
        target = VaultTarget(
            addr, cfg.cacert or cfg.certs_dir / cfg.cert_name, server_name, False, None, cfg.timeout
        )
        try:
            status = Connector(target, server_name).seal_status()
        except (VaultError, EntrypointError) as exc:
            problems.append(f"{addr}: {exc}")
            states[addr] = "unreachable"
            continue
        if not status.initialized or status.sealed:
            state = "not initialized" if not status.initialized else "sealed"
            problems.append(f"{addr}: {state}")
            states[addr] = state
        else:
            states[addr] = "unsealed"
    if problems:
        return Check(VAULT_UNSEALED, False, "; ".join(problems), {"replicas": states})
    return Check(VAULT_UNSEALED, True, f"{len(addrs)} replica(s) unsealed", {"replicas": states})


def check_served(
    addrs: list[str], reference: tuple[str, Any, str | None], cfg: VerifyConfig
) -> Check:
    from entrypoint.certs import served_certificate, served_info

    sha256, not_after, server_name = reference
    problems, served = [], {}
    for addr in addrs:
        parts = urlsplit(addr)
        try:
            der = served_certificate(
                parts.hostname or "127.0.0.1", parts.port or 8200, server_name, cfg.timeout
            )
        except (OSError, ssl.SSLError) as exc:
            problems.append(f"{addr}: no handshake ({exc})")
            continue
        got_sha, got_not_after = served_info(der)
        served[addr] = {"sha256": got_sha, "not_after": got_not_after.isoformat()}
        if got_sha != sha256 or got_not_after != not_after:
            problems.append(
                f"{addr} serves sha256={got_sha[:16]}… not_after={got_not_after.isoformat()}"
            )
    data = {"expected": {"sha256": sha256, "not_after": not_after.isoformat()}, "served": served}
    if not addrs:
        return Check(SERVED_CERTIFICATE, False, "no replica address to probe", data)
    if problems:
        detail = (
            f"node dir has sha256={sha256[:16]}… not_after={not_after.isoformat()}; "
            + "; ".join(problems)
        )
        return Check(SERVED_CERTIFICATE, False, detail, data)
    return Check(
        SERVED_CERTIFICATE,
        True,
        f"{len(addrs)} replica(s) serve sha256={sha256[:16]}… not_after={not_after.isoformat()}",
        data,
    )


def check_expiry(reference: tuple[str, Any, str | None], cfg: VerifyConfig) -> Check:
    from entrypoint.certs import now_utc

    not_after = reference[1]
    days = (not_after - now_utc()).total_seconds() / 86400
    data = {"days_left": round(days, 1), "min_days": cfg.min_days}
    if days < cfg.min_days:
        return Check(
            CERTIFICATE_EXPIRY, False, f"expires in {days:.1f} days (< {cfg.min_days:g})", data
        )
    return Check(CERTIFICATE_EXPIRY, True, f"{days:.1f} days left", data)


# --- the reloader's log ---------------------------------------------------------------------


def summarize_log(lines: list[str]) -> Check:
    """Count levels and events of the last lines; fail when the newest level is an error."""
    levels: dict[str, int] = {}
    events: list[str] = []
    last_level = ""
    for line in lines:
        level = _LEVEL.search(line)
        if level:
            last_level = (level.group(1) or level.group(2)).lower()
            levels[last_level] = levels.get(last_level, 0) + 1
        event = _EVENT.search(line)
        if event:
            events.append(event.group(1) or event.group(2))
    data = {"lines": len(lines), "levels": levels, "last_events": events[-5:], "tail": lines[-5:]}
    if not lines:
        return Check(RELOADER_LOG, False, "no log lines", data)
    summary = ", ".join(f"{k}={v}" for k, v in sorted(levels.items())) or "no events"
    detail = f"{len(lines)} line(s): {summary}; last event {events[-1] if events else '-'}"
    return Check(RELOADER_LOG, last_level not in {"error", "critical"}, detail, data)


def reloader_log(client: Any, cfg: VerifyConfig) -> Check:
    import docker.errors

    try:
        raw = client.api.service_logs(
            cfg.reloader_service, stdout=True, stderr=True, tail=cfg.log_lines, follow=False
        )
    except docker.errors.NotFound:
        return Check(RELOADER_LOG, False, f"service {cfg.reloader_service} not found")
    text = b"".join(raw).decode(errors="replace") if not isinstance(raw, bytes) else raw.decode()
    lines = [logs.redact(line) for line in text.splitlines() if line.strip()]
    return summarize_log(lines[-cfg.log_lines :])


# --- all of it --------------------------------------------------------------------------------


def run_checks(client: Any, cfg: VerifyConfig) -> list[Check]:
    """Every check, each independent of the others' failures."""
    nodes = _node_names(client)
    vault_tasks = _tasks(client, cfg.vault_service)
    checks = [
        check_reloader(client, cfg),
        check_distributor(client, cfg, vault_tasks or [], nodes),
        check_vault_tasks(client, cfg, vault_tasks),
    ]
    addrs = replica_addrs(vault_tasks or [], nodes, cfg)
    try:
        reference = _reference(cfg)
    except EntrypointError as exc:
        server_name = cfg.tls_server_name
        checks.append(check_unsealed(addrs, cfg, server_name))
        checks.append(Check(SERVED_CERTIFICATE, False, str(exc)))
        checks.append(Check(CERTIFICATE_EXPIRY, False, str(exc)))
    else:
        checks.append(check_unsealed(addrs, cfg, reference[2]))
        checks.append(check_served(addrs, reference, cfg))
        checks.append(check_expiry(reference, cfg))
    checks.append(reloader_log(client, cfg))
    return checks


def render_table(checks: list[Check]) -> str:
    width = max(len(c.name) for c in checks)
    rows = [f"{'check':<{width}}  status  detail", f"{'-' * width}  ------  ------"]
    rows += [f"{c.name:<{width}}  {'ok' if c.ok else 'FAIL':<6}  {c.detail}" for c in checks]
    return "\n".join(rows)


def render_json(checks: list[Check]) -> str:
    return json.dumps(
        {
            "ok": all(c.ok for c in checks),
            "failed": [c.name for c in checks if not c.ok],
            "checks": [dataclasses.asdict(c) for c in checks],
        },
        indent=2,
        default=str,
    )


def verify(cfg: VerifyConfig, echo: Callable[[str], None], as_json: bool) -> None:
    from entrypoint.distributor import docker_client

    with docker_client(cfg.timeout) as client:
        checks = run_checks(client, cfg)
    echo(render_json(checks) if as_json else render_table(checks))
    failed = [c.name for c in checks if not c.ok]
    for check in checks:
        logs.event(
            log, "check", logging.INFO if check.ok else logging.ERROR, check=check.name, ok=check.ok
        )
    if failed:
        raise VerificationFailed(f"failed checks: {', '.join(failed)}")


def make_command() -> click.Command:
    """The click command; built on demand because the CLI module imports this one."""
    from entrypoint.cli import ENV, option

    env = ENV + "VERIFY_"

    @click.command("verify")
    @option(
        "--vault-service",
        env=env + "VAULT_SERVICE",
        default="iklimco_vault",
        help="Swarm service running Vault.",
    )
    @option(
        "--reloader-service",
        env=env + "RELOADER_SERVICE",
        default="iklimco_cert-reloader",
        help="Swarm service running the cert-reloader.",
    )
    @option(
        "--distributor-service",
        env=env + "DISTRIBUTOR_SERVICE",
        default="iklimco_cert-distributor",
        help="Swarm service running the cert-distributor.",
    )
    @option(
        "--certs-dir",
        env=env + "CERTS_DIR",
        default="/opt/iklimco/ssl",
        type=click.Path(path_type=Path, file_okay=False),
        help="Node-local dir whose certificate every replica must serve.",
    )
    @option(
        "--cert-name",
        env="VAULT_TLS_CERT_NAME",
        default=DEFAULT_CERT_NAME,
        help="Certificate chain file in the certs dir (leaf first).",
    )
    @option(
        "--cacert",
        env="VAULT_CACERT",
        default=None,
        type=click.Path(path_type=Path, dir_okay=False),
        help="CA bundle to verify Vault with [default: the chain in the certs dir].",
    )
    @option(
        "--tls-server-name",
        env="VAULT_TLS_SERVER_NAME",
        default=None,
        help="Name to verify (and send as SNI) [default: the leaf's first DNS SAN].",
    )
    @option(
        "--vault-addr",
        "vault_addrs",
        env=env + "VAULT_ADDRS",
        multiple=True,
        help="Extra replica address to check (repeatable; the env var is space-separated).",
    )
    @option(
        "--vault-port",
        env=env + "VAULT_PORT",
        default=8200,
        type=click.IntRange(1, 65535),
        help="Vault's container port, looked up among the tasks' host-mode published ports.",
    )
    @option(
        "--min-days",
        env=env + "MIN_DAYS",
        default=14.0,
        type=float,
        help="Fail when the certificate expires within this many days.",
    )
    @option(
        "--log-lines",
        env=env + "LOG_LINES",
        default=20,
        type=click.IntRange(min=1),
        help="How many of the reloader's last log lines to summarize.",
    )
    @option(
        "--timeout",
        env=env + "TIMEOUT",
        default=10.0,
        type=click.FloatRange(min=0.5),
        help="Seconds to wait for one Docker, Vault or TLS answer.",
    )
    @click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
    def verify_command(as_json: bool, vault_addrs: tuple[str, ...], **opts: Any) -> None:
        """The verification checklist: reloader, distributor on every Vault node, every replica
        running and unsealed, the served certificate matching the node dir and not expiring.

        Exit 0 when every check passes, else 1 with the failed checks named.
        """
        cfg = VerifyConfig(vault_addrs=tuple(vault_addrs), **opts)
        verify(cfg, click.echo, as_json)

    return verify_command
