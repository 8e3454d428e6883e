"""cert-reloader: notice a renewed pair in SWAG's volume, validate it, publish it to shared storage.

Change detection polls the content (a network mount delivers no inotify events). What was
published last is read back from the manifest beside the published files, so a restarted
reloader publishes nothing new.
"""

from __future__ import annotations

import datetime as dt
import enum
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from entrypoint import files, logs, waits
from entrypoint.certs import CertInfo, CertPair, now_utc, parse_chain, read_pair, validate_pair
from entrypoint.config import DEFAULT_CERT_NAME, DEFAULT_KEY_NAME
from entrypoint.errors import (
    CertificateError,
    CertificateMissing,
    DestinationUnavailable,
    DowngradeRefused,
    EntrypointError,
    SourceNotReady,
)
from entrypoint.manifest import Manifest, manifest_item, read_manifest
from entrypoint.supervisor import STOPPING, SignalRecorder

log = logging.getLogger(__name__)

# SWAG keeps certbot's live/ links under /config/keys/letsencrypt.
DEFAULT_SOURCE_CERT = Path("/config/keys/letsencrypt/fullchain.pem")
DEFAULT_SOURCE_KEY = Path("/config/keys/letsencrypt/privkey.pem")


def resolve_sources(
    cert: Path | None, key: Path | None, environ: Mapping[str, str]
) -> tuple[Path, Path]:
    """Explicit paths win; a certbot deploy hook gets them from ``RENEWED_LINEAGE``."""
    lineage = environ.get("RENEWED_LINEAGE", "").strip()
    if cert is None:
        cert = Path(lineage) / "fullchain.pem" if lineage else DEFAULT_SOURCE_CERT
    if key is None:
        key = Path(lineage) / "privkey.pem" if lineage else DEFAULT_SOURCE_KEY
    return cert, key


@dataclass(frozen=True)
class ReloaderConfig:
    source_cert: Path
    source_key: Path
    dest_dir: Path
    cert_name: str = DEFAULT_CERT_NAME
    key_name: str = DEFAULT_KEY_NAME
    interval: float = 30.0
    settle: float = 2.0
    settle_deadline: float = 60.0
    allow_downgrade: bool = False
    once: bool = False

    @property
    def source(self) -> CertPair:
        return CertPair(self.source_cert, self.source_key)

    @property
    def dest(self) -> CertPair:
        return CertPair.in_dir(self.dest_dir, self.cert_name, self.key_name)


class Outcome(enum.Enum):
    PUBLISHED = "published"
    UP_TO_DATE = "up_to_date"


class Reloader:
    """One poll looks at the source and publishes it when it differs from the manifest."""

    def __init__(
        self,
        cfg: ReloaderConfig,
        sleep: Callable[[float], object],
        should_stop: Callable[[], bool],
        clock: Callable[[], dt.datetime] = now_utc,
    ) -> None:
        self.cfg = cfg
        self._sleep = sleep
        self._should_stop = should_stop
        self._clock = clock
        self._last_report: str | None = None

    def poll(self) -> Outcome:
        """Publish the source if it is new and valid; raises a typed error when it cannot."""
        cfg = self.cfg
        cert_pem, key_pem = read_pair(cfg.source)
        published = self._published()
        if published is not None and published.matches(cert_pem, key_pem):
            return Outcome.UP_TO_DATE
        cert_pem, key_pem = self._settled(cert_pem, key_pem)
        now = self._clock()
        info = validate_pair(cert_pem, key_pem, now, str(cfg.source_cert), str(cfg.source_key))
        self._refuse_downgrade(info, published)
        manifest = Manifest.describe(cfg.cert_name, cfg.key_name, cert_pem, key_pem, info, now)
        self._publish(cert_pem, key_pem, manifest)
        logs.event(
            log,
            "published",
            dest=str(cfg.dest_dir),
            replaced=published.fingerprint if published else "-",
            **info.log_fields(),
        )
        return Outcome.PUBLISHED

    def _published(self) -> Manifest | None:
        """The manifest of the destination, when the published files still match it."""
        if not self.cfg.dest_dir.is_dir():
            raise DestinationUnavailable(f"destination {self.cfg.dest_dir} is not a directory")
        try:
            manifest = read_manifest(self.cfg.dest_dir)
        except SourceNotReady:
            return None
        if manifest is None:
            return None
        try:
            cert_pem, key_pem = read_pair(self.cfg.dest)
        except CertificateError:
            return None
        return manifest if manifest.matches(cert_pem, key_pem) else None

    def _settled(self, cert_pem: bytes, key_pem: bytes) -> tuple[bytes, bytes]:
        """Wait until two reads ``settle`` seconds apart agree (certbot swaps links one by one)."""
        last = [cert_pem, key_pem]

        def same_after_pause() -> tuple[bytes, bytes]:
            self._sleep(self.cfg.settle)
            if self._should_stop():
                raise SourceNotReady("stopping while the source settled")
            now_cert, now_key = read_pair(self.cfg.source)
            if [now_cert, now_key] != last:
                last[:] = [now_cert, now_key]
                raise SourceNotReady(
                    f"source still changing after {self.cfg.settle_deadline:g}s "
                    f"({self.cfg.source_cert}, {self.cfg.source_key})"
                )
            return now_cert, now_key

        polling = waits.until_deadline(
            self.cfg.settle_deadline, 0.0, (SourceNotReady,), self._sleep, self._should_stop
        )
        for attempt in polling:
            with attempt:
                return same_after_pause()
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    def _refuse_downgrade(self, info: CertInfo, published: Manifest | None) -> None:
        if self.cfg.allow_downgrade:
            return
        current = published.not_after if published else self._dest_not_after()
        if current is not None and info.not_after < current:
            raise DowngradeRefused(
                f"{self.cfg.source_cert} expires {info.not_after.isoformat()}, before the "
                f"published certificate ({current.isoformat()}); set --allow-downgrade to "
                "publish it anyway"
            )

    def _dest_not_after(self) -> dt.datetime | None:
        """Expiry of a published certificate that has no manifest (an older deployment's)."""
        try:
            chain = parse_chain(self.cfg.dest.cert.read_bytes(), str(self.cfg.dest.cert))
        except (OSError, CertificateError):
            return None
        return chain[0].not_valid_after_utc

    def _publish(self, cert_pem: bytes, key_pem: bytes, manifest: Manifest) -> None:
        dest = self.cfg.dest
        try:
            files.atomic_write_all(
                [
                    (dest.cert, cert_pem, files.CERT_MODE),
                    (dest.key, key_pem, files.KEY_MODE),
                    manifest_item(self.cfg.dest_dir, manifest),
                ]
            )
        except OSError as exc:
            raise DestinationUnavailable(
                f"cannot publish to {self.cfg.dest_dir}: {exc.strerror or exc}"
            ) from None

    def poll_and_report(self) -> None:
        """One poll of the long-running loop: every failure is logged once and retried later."""
        try:
            outcome = self.poll()
        except EntrypointError as exc:
            report = f"{type(exc).__name__}:{exc}"
            if report != self._last_report:
                self._last_report = report
                level = logging.WARNING if isinstance(exc, SourceNotReady) else logging.ERROR
                logs.event(
                    log,
                    _problem_event(exc),
                    level,
                    error=type(exc).__name__,
                    reason=str(exc),
                    retry_in=self.cfg.interval,
                )
            return
        if outcome is Outcome.UP_TO_DATE and self._last_report not in _QUIET:
            # At start, and after a problem went away.
            logs.event(log, "up_to_date", dest=str(self.cfg.dest_dir))
        self._last_report = outcome.value


_QUIET = {Outcome.PUBLISHED.value, Outcome.UP_TO_DATE.value}


def _problem_event(exc: EntrypointError) -> str:
    if isinstance(exc, CertificateMissing):
        return "source_unavailable"
    if isinstance(exc, CertificateError):
        return "refused"
    if isinstance(exc, DestinationUnavailable):
        return "destination_unavailable"
    return "source_not_ready"


def run(cfg: ReloaderConfig) -> int:
    """The command: one publication (``--once``) or a poll loop until SIGTERM/SIGINT."""
    recorder = SignalRecorder()
    with recorder.installed(STOPPING):
        reloader = Reloader(cfg, recorder.wait, lambda: recorder.stop_requested is not None)
        logs.event(
            log,
            "started",
            source_cert=str(cfg.source_cert),
            source_key=str(cfg.source_key),
            dest=str(cfg.dest_dir),
            interval=cfg.interval,
            once=cfg.once,
        )
        if cfg.once:
            outcome = reloader.poll()
            if outcome is Outcome.UP_TO_DATE:
                logs.event(log, "up_to_date", dest=str(cfg.dest_dir))
            return 0
        while recorder.stop_requested is None:
            reloader.poll_and_report()
            recorder.wait(cfg.interval)
        logs.event(log, "stopped", signal=recorder.stop_requested)
    return 0
