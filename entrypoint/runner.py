"""``vault-entrypoint run``: preflight the certificates, start the server, unseal it, watch it.

Only what the preflight needs is imported before the server is spawned; hvac and requests
(the slow imports) load afterwards, while the server is still opening its listener.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping

from entrypoint import logs
from entrypoint.certs import CertInfo, CertPair, now_utc, read_pair, validate_pair
from entrypoint.config import RunConfig, server_environment
from entrypoint.errors import CertificateMissing, ConfigError
from entrypoint.files import digest
from entrypoint.supervisor import FORWARDED, SignalRecorder, Supervisor, become_subreaper

log = logging.getLogger(__name__)


def cert_pair(cfg: RunConfig) -> CertPair:
    return CertPair.in_dir(cfg.certs_dir, cfg.cert_name, cfg.key_name)


def wait_for_files(pair: CertPair, deadline: float, recorder: SignalRecorder) -> None:
    """Wait for the distributor to deliver the pair on a fresh node (bounded by ``deadline``)."""
    if pair.cert.is_file() and pair.key.is_file():
        return
    from entrypoint import waits  # tenacity is only needed on this slow path

    logs.event(
        log,
        "certs_waiting",
        logging.WARNING,
        cert=str(pair.cert),
        key=str(pair.key),
        deadline=deadline,
    )

    def both_present() -> None:
        for path in (pair.cert, pair.key):
            if not path.is_file():
                raise CertificateMissing(f"{path} did not appear within {deadline:g}s")

    polling = waits.until_deadline(
        deadline,
        0.5,
        (CertificateMissing,),
        recorder.wait,
        lambda: recorder.stop_requested is not None,
    )
    for attempt in polling:
        with attempt:
            both_present()


def preflight(cfg: RunConfig, recorder: SignalRecorder | None = None) -> tuple[CertInfo, str]:
    """Validate the pair in the certs dir; returns its report and the digest of both files."""
    pair = cert_pair(cfg)
    if recorder is not None and cfg.certs_wait > 0:
        wait_for_files(pair, cfg.certs_wait, recorder)
    cert_pem, key_pem = read_pair(pair)
    now = now_utc()
    info = validate_pair(cert_pem, key_pem, now, str(pair.cert), str(pair.key))
    days_left = info.days_left(now)
    logs.event(log, "certs_ok", days_left=round(days_left, 1), **info.log_fields())
    if days_left < cfg.cert_warn_days:
        logs.event(
            log,
            "cert_expires_soon",
            logging.WARNING,
            days_left=round(days_left, 1),
            warn_days=cfg.cert_warn_days,
            not_after=info.not_after.isoformat(),
        )
    return info, digest([cert_pem, key_pem])


def _check_config(cfg: RunConfig) -> None:
    if cfg.cacert is not None and not cfg.cacert.is_file():
        raise ConfigError(f"VAULT_CACERT {cfg.cacert} does not exist")


def _thread(name: str, body: Callable[[], None]) -> threading.Thread:
    def guarded() -> None:
        try:
            body()
        except Exception:
            # A crashed helper must not take Vault down; say so loudly instead.
            logs.event(log, "thread_crashed", logging.ERROR, exc_info=True, thread=name)

    thread = threading.Thread(target=guarded, name=name, daemon=True)
    thread.start()
    return thread


def _start_companions(
    cfg: RunConfig,
    supervisor: Supervisor,
    stop: threading.Event,
    info: CertInfo,
    files_digest: str,
    started: float,
) -> list[threading.Thread]:
    from entrypoint import waits
    from entrypoint.tlswatch import TLSWatcher
    from entrypoint.unseal import Unsealer
    from entrypoint.vault import Connector, VaultTarget

    pair = cert_pair(cfg)
    target = VaultTarget(
        addr=cfg.addr,
        cacert=cfg.cacert,
        server_name=cfg.tls_server_name,
        skip_verify=cfg.skip_verify,
        certs=pair,
    )
    connector = Connector(target, info.server_name())
    if cfg.skip_verify:
        logs.event(
            log,
            "tls_verify_disabled",
            logging.WARNING,
            hint="VAULT_SKIP_VERIFY is set: the unseal key goes to whoever answers on " + cfg.addr,
        )
    else:
        logs.event(
            log,
            "tls_trust",
            ca=str(cfg.cacert or pair.cert),
            server_name=connector.server_name or target.host_port[0],
        )
    unsealer = Unsealer(
        connector,
        cfg.unseal_key_file,
        waits.UnsealTimings(cfg.retry_max_wait, cfg.rejected_backoff, cfg.watch_interval),
        stop,
        reunseal=cfg.reunseal,
        started=started,
    )
    watcher = TLSWatcher(
        pair,
        cfg.cert_poll_interval,
        supervisor.send_signal,
        target.host_port,
        cfg.reload_confirm_timeout,
        stop,
        info,
        files_digest,
        on_change=lambda new: connector.set_default_server_name(new.server_name()),
    )
    return [_thread("unseal", unsealer.run), _thread("tls-watch", watcher.run)]


def run(cfg: RunConfig, environ: Mapping[str, str] | None = None) -> int:
    """Run the server under supervision; returns the exit code the wrapper should exit with."""
    started = time.monotonic()
    recorder = SignalRecorder()
    with recorder.installed((*FORWARDED, signal.SIGCHLD)):
        _check_config(cfg)
        info, files_digest = preflight(cfg, recorder)
        if recorder.stop_requested is not None:
            logs.event(
                log, "stopped_before_start", signal=signal.Signals(recorder.stop_requested).name
            )
            return 128 + recorder.stop_requested
        supervisor = Supervisor(recorder, cfg.stop_grace)
        argv = cfg.server_argv()
        pid = supervisor.spawn(argv, server_environment(os.environ if environ is None else environ))
        logs.event(
            log,
            "server_started",
            pid=pid,
            binary=argv[0],
            config=cfg.config_path,
            extra_args=len(cfg.server_args),
            startup_ms=round((time.monotonic() - started) * 1000),
        )
        subreaper = become_subreaper()
        logs.event(log, "reaper", pid1=os.getpid() == 1, subreaper=subreaper)
        stop = threading.Event()
        threads = _start_companions(cfg, supervisor, stop, info, files_digest, started)
        try:
            code = supervisor.wait()
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=2.0)
        logs.event(log, "server_exited", code=code, pid=pid)
        return code
