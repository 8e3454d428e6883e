"""Hot TLS reload: poll the certs dir, validate a new pair, SIGHUP the server, confirm it."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable

from entrypoint import files, logs
from entrypoint.certs import CertInfo, CertPair, await_served, read_pair, validate_pair
from entrypoint.errors import CertificateError, ServedCertificateMismatch

log = logging.getLogger(__name__)


class TLSWatcher:
    def __init__(
        self,
        pair: CertPair,
        interval: float,
        signal_server: Callable[[int], bool],
        probe: tuple[str, int],
        confirm_timeout: float,
        stop: threading.Event,
        current: CertInfo,
        current_digest: str,
        on_change: Callable[[CertInfo], None] | None = None,
    ) -> None:
        self._pair = pair
        self._interval = interval
        self._signal_server = signal_server
        self._probe = probe
        self._confirm_timeout = confirm_timeout
        self._stop = stop
        self._current = current
        self._digest = current_digest
        self._on_change = on_change
        self._missing_logged = False

    def run(self) -> None:
        while not self._stop.wait(self._interval):
            self.poll()

    def _read(self) -> tuple[bytes, bytes, str] | None:
        try:
            cert_pem, key_pem = read_pair(self._pair)
        except CertificateError as exc:
            if not self._missing_logged:
                self._missing_logged = True
                logs.event(log, "tls_files_unavailable", logging.WARNING, reason=str(exc))
            return None
        self._missing_logged = False
        return cert_pem, key_pem, files.digest([cert_pem, key_pem])

    def poll(self) -> None:
        first = self._read()
        if first is None or first[2] == self._digest:
            return
        # Let a writer that replaces the two files one at a time finish.
        if self._stop.wait(min(1.0, self._interval / 2)):
            return
        settled = self._read()
        if settled is None or settled[2] != first[2]:
            return
        cert_pem, key_pem, digest = settled
        self._digest = digest
        try:
            info = validate_pair(cert_pem, key_pem, None, str(self._pair.cert), str(self._pair.key))
        except CertificateError as exc:
            logs.event(
                log,
                "tls_reload_rejected",
                logging.ERROR,
                reason=str(exc),
                serving=self._current.fingerprint,
            )
            return
        old = self._current
        if info.fingerprint == old.fingerprint:
            return
        delivered = self._signal_server(signal.SIGHUP)
        logs.event(log, "tls_reload_signalled", delivered=delivered, **info.log_fields())
        if not delivered:
            return
        self._current = info
        if self._on_change is not None:
            self._on_change(info)
        self._confirm(old, info)

    def _confirm(self, old: CertInfo, new: CertInfo) -> None:
        host, port = self._probe
        try:
            await_served(
                host,
                port,
                new.server_name(),
                new.fingerprint,
                None,
                self._confirm_timeout,
                0.1,
                self._stop.wait,
                self._stop.is_set,
            )
        except ServedCertificateMismatch as exc:
            if not self._stop.is_set():
                logs.event(
                    log,
                    "tls_reload_unconfirmed",
                    logging.ERROR,
                    expected_sha256=new.fingerprint,
                    reason=str(exc),
                    waited=self._confirm_timeout,
                )
            return
        logs.event(
            log,
            "tls_reloaded",
            old_sha256=old.fingerprint,
            new_sha256=new.fingerprint,
            not_after=new.not_after.isoformat(),
        )
