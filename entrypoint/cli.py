"""The ``vault-entrypoint`` command line: options (each also an environment variable) map onto
one config object and a plain function; only this layer turns errors into exit codes."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from entrypoint import logs
from entrypoint.config import DEFAULT_CERT_NAME, DEFAULT_KEY_NAME, RunConfig, resolve_binary
from entrypoint.errors import EntrypointError, ExitCode

log = logging.getLogger("entrypoint.cli")
F = TypeVar("F", bound=Callable[..., Any])
ENV = "VAULT_ENTRYPOINT_"


class _Group(click.Group):
    """Turns the package's typed errors into one clear line and a named exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except EntrypointError as exc:
            logs.event(log, "failed", logging.ERROR, error=type(exc).__name__, reason=str(exc))
            raise click.exceptions.Exit(int(exc.exit_code)) from None


def option(*decls: str, env: str, **kwargs: Any) -> Callable[[F], F]:
    return click.option(*decls, envvar=env, show_envvar=True, show_default=True, **kwargs)


def cert_options(f: F) -> F:
    for decorator in reversed(
        [
            option(
                "--certs-dir",
                env="VAULT_CERTS_DIR",
                default="/vault/certs",
                type=click.Path(path_type=Path),
                help="Directory holding the TLS pair.",
            ),
            option(
                "--cert-name",
                env="VAULT_TLS_CERT_NAME",
                default=DEFAULT_CERT_NAME,
                help="Certificate chain file in the certs dir (leaf first).",
            ),
            option(
                "--key-name",
                env="VAULT_TLS_KEY_NAME",
                default=DEFAULT_KEY_NAME,
                help="Private key file in the certs dir.",
            ),
        ]
    ):
        f = decorator(f)
    return f


def vault_options(f: F) -> F:
    for decorator in reversed(
        [
            option(
                "--addr",
                env="VAULT_ADDR",
                default="https://127.0.0.1:8200",
                help="Address of the local Vault listener.",
            ),
            option(
                "--cacert",
                env="VAULT_CACERT",
                default=None,
                type=click.Path(path_type=Path),
                help="CA bundle to verify Vault with [default: the chain in the certs dir].",
            ),
            option(
                "--tls-server-name",
                env="VAULT_TLS_SERVER_NAME",
                default=None,
                help="Name to verify (and send as SNI) [default: the leaf's first DNS SAN].",
            ),
            option(
                "--skip-verify",
                env="VAULT_SKIP_VERIFY",
                is_flag=True,
                default=False,
                help="Do not verify Vault's certificate (logs a warning; the key may leak).",
            ),
        ]
    ):
        f = decorator(f)
    return f


def key_file_option(f: F) -> F:
    return option(
        "--unseal-key-file",
        env="VAULT_UNSEAL_KEY_FILE",
        default="/run/secrets/vault_unseal_key",
        type=click.Path(path_type=Path),
        help="Secret file: one key, one share per line, or 'operator init -format=json'.",
    )(f)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@option(
    "--log-format",
    env=ENV + "LOG_FORMAT",
    type=click.Choice(["text", "json"]),
    default="text",
    help="One line per event: key=value text or JSON.",
)
@option(
    "--log-level",
    env=ENV + "LOG_LEVEL",
    default="info",
    type=click.Choice(["debug", "info", "warning", "error"]),
    help="Lowest level logged.",
)
@click.version_option(package_name="vault-entrypoint")
def cli(log_format: str, log_level: str) -> None:
    """Run HashiCorp Vault or OpenBao as PID 1: certificate preflight, supervision,
    retry-unseal from a Docker secret, hot TLS reload.

    Every option can also be set through the environment variable shown in its help.
    """
    logs.setup(log_format, log_level)


@cli.command(context_settings={"ignore_unknown_options": True})
@option(
    "--binary",
    env="VAULT_BINARY",
    default="vault",
    help="Server binary (falls back to 'bao' when 'vault' is not on PATH).",
)
@option(
    "--config-dir",
    env="VAULT_CONFIG_DIR",
    default="/vault/config",
    help="File or directory passed to the server as -config=.",
)
@cert_options
@key_file_option
@vault_options
@option(
    "--certs-wait",
    env=ENV + "CERTS_WAIT",
    default=120.0,
    type=click.FloatRange(min=0),
    help="Seconds to wait for the TLS pair to appear before giving up.",
)
@option(
    "--cert-warn-days",
    env=ENV + "CERT_WARN_DAYS",
    default=14.0,
    type=float,
    help="Warn when the certificate expires within this many days.",
)
@option(
    "--stop-grace",
    env=ENV + "STOP_GRACE",
    default=25.0,
    type=click.FloatRange(min=0),
    help="Seconds between forwarding SIGTERM/SIGINT and sending SIGKILL.",
)
@option(
    "--retry-max-wait",
    env=ENV + "RETRY_MAX_WAIT",
    default=5.0,
    type=click.FloatRange(min=0.05),
    help="Cap of the backoff while Vault is unreachable.",
)
@option(
    "--rejected-backoff",
    env=ENV + "REJECTED_BACKOFF",
    default=30.0,
    type=click.FloatRange(min=0),
    help="Seconds to wait after Vault rejected the key.",
)
@option(
    "--watch-interval",
    env=ENV + "WATCH_INTERVAL",
    default=10.0,
    type=click.FloatRange(min=0.05),
    help="Seconds between seal checks once unsealed.",
)
@option(
    "--cert-poll-interval",
    env=ENV + "CERT_POLL_INTERVAL",
    default=10.0,
    type=click.FloatRange(min=0.05),
    help="Seconds between polls of the certs dir.",
)
@option(
    "--reload-confirm-timeout",
    env=ENV + "RELOAD_CONFIRM_TIMEOUT",
    default=30.0,
    type=click.FloatRange(min=0),
    help="Seconds to wait for Vault to serve a new certificate.",
)
@option(
    "--reunseal/--no-reunseal",
    env=ENV + "REUNSEAL",
    default=False,
    help="Unseal again when the replica is sealed later (off: sealing may be deliberate).",
)
@click.argument("server_args", nargs=-1, type=click.UNPROCESSED)
def run(
    server_args: tuple[str, ...],
    binary: str,
    config_dir: str,
    certs_dir: Path,
    cert_name: str,
    key_name: str,
    unseal_key_file: Path,
    addr: str,
    cacert: Path | None,
    tls_server_name: str | None,
    skip_verify: bool,
    **timings: Any,
) -> None:
    """Start the server as a supervised child and unseal it.

    Arguments after `--` are passed to `vault server`. The wrapper exits with the server's
    exit code (128+N when it died from signal N).
    """
    from entrypoint import runner

    cfg = RunConfig(
        binary=resolve_binary(binary),
        config_path=config_dir,
        certs_dir=certs_dir,
        cert_name=cert_name,
        key_name=key_name,
        unseal_key_file=unseal_key_file,
        addr=addr,
        cacert=cacert,
        tls_server_name=tls_server_name,
        skip_verify=skip_verify,
        server_args=server_args,
        **timings,
    )
    sys.exit(runner.run(cfg))


def vault_target(
    addr: str,
    cacert: Path | None,
    tls_server_name: str | None,
    skip_verify: bool,
    certs_dir: Path,
    cert_name: str,
    key_name: str,
    timeout: float,
) -> Any:
    from entrypoint.certs import CertPair
    from entrypoint.vault import VaultTarget

    return VaultTarget(
        addr,
        cacert,
        tls_server_name,
        skip_verify,
        CertPair.in_dir(certs_dir, cert_name, key_name),
        timeout,
    )


def connector_for(target: Any) -> Any:
    """A connector whose default server name comes from the leaf in the certs dir, if readable."""
    from entrypoint.certs import inspect_pair
    from entrypoint.errors import CertificateError
    from entrypoint.vault import Connector

    name = None
    if not target.skip_verify and target.certs is not None:
        try:
            name = inspect_pair(target.certs).server_name()
        except CertificateError:
            name = None
    return Connector(target, name)


@cli.command()
@vault_options
@cert_options
@option(
    "--timeout",
    env=ENV + "HEALTH_TIMEOUT",
    default=2.0,
    type=click.FloatRange(min=0.1),
    help="Seconds to wait for Vault's answer.",
)
def health(timeout: float, **opts: Any) -> None:
    """Exit 0 when the local replica is initialized and unsealed (standby counts as healthy).

    Exit codes: 10 sealed, 11 not initialized, 12 unreachable, 13 TLS verification failed.
    Made for a Docker HEALTHCHECK.
    """
    from entrypoint.errors import VaultNotInitialized, VaultSealed

    status = connector_for(vault_target(timeout=timeout, **opts)).seal_status()
    if not status.initialized:
        raise VaultNotInitialized("not initialized")
    if status.sealed:
        raise VaultSealed(f"sealed (progress {status.progress}/{status.threshold})")
    click.echo(f"unsealed version={status.version}")


@cli.command()
@vault_options
@cert_options
@key_file_option
@option(
    "--wait",
    "wait_seconds",
    env=ENV + "UNSEAL_WAIT",
    default=0.0,
    type=click.FloatRange(min=0),
    help="Seconds to keep retrying while Vault is unreachable.",
)
def unseal(unseal_key_file: Path, wait_seconds: float, **opts: Any) -> None:
    """Unseal the Vault at VAULT_ADDR once with the secret file; exit 0 when unsealed."""
    import threading

    from entrypoint import waits
    from entrypoint.errors import VaultTLSError, VaultUnreachable
    from entrypoint.unseal import unseal_once

    connector = connector_for(vault_target(timeout=3.0, **opts))
    stop = threading.Event()
    polling = waits.until_deadline(
        wait_seconds, 0.2, (VaultUnreachable, VaultTLSError), stop.wait, stop.is_set
    )
    for attempt in polling:
        with attempt:
            status = unseal_once(connector, unseal_key_file)
    click.echo(f"unsealed version={status.version}")


@cli.group()
def certs() -> None:
    """Inspect the TLS pair Vault will serve."""


@certs.command("check")
@cert_options
@option(
    "--cert-warn-days",
    env=ENV + "CERT_WARN_DAYS",
    default=14.0,
    type=float,
    help="Fail (exit 30) when the certificate expires within this many days.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def certs_check(
    certs_dir: Path, cert_name: str, key_name: str, cert_warn_days: float, as_json: bool
) -> None:
    """The preflight report: chain order, key match, validity, SANs, fingerprint.

    Exit codes: 0 fine, 30 expires soon, 65 invalid pair, 66 missing file.
    """
    from entrypoint.certs import CertPair, inspect_pair, now_utc

    info = inspect_pair(CertPair.in_dir(certs_dir, cert_name, key_name))
    days_left = info.days_left(now_utc())
    report = {
        **info.log_fields(),
        "issuer": info.issuer,
        "not_before": info.not_before.isoformat(),
        "days_left": round(days_left, 1),
        "ok": days_left >= cert_warn_days,
    }
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        for key, value in report.items():
            click.echo(f"{key:>11}: {value}")
    if days_left < cert_warn_days:
        click.echo(f"certificate expires in {days_left:.1f} days (< {cert_warn_days:g})", err=True)
        sys.exit(int(ExitCode.CERT_EXPIRING))


def main() -> None:
    cli(prog_name="vault-entrypoint")


# The certificate delivery companions (issue 3); their module imports only click.
from entrypoint.companion_cli import distributor, reloader  # noqa: E402

cli.add_command(reloader)
cli.add_command(distributor)

# Operator tooling (issue 5): bootstrap/rotation; heavy imports load only when it runs.
from entrypoint import bootstrap as _bootstrap  # noqa: E402

cli.add_command(_bootstrap.make_command())

from entrypoint import verify as _verify  # noqa: E402

cli.add_command(_verify.make_command())
