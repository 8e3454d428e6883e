"""cert-reloader logic against real files in a temp dir (no subprocess, no waiting)."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from entrypoint import devpki, files, logs
from entrypoint.errors import (
    CertificateMismatch,
    CertificateMissing,
    CertificateNotCurrentlyValid,
    CertificateParseError,
    DestinationUnavailable,
    DowngradeRefused,
)
from entrypoint.manifest import MANIFEST_NAME, read_manifest
from entrypoint.reloader import (
    DEFAULT_SOURCE_CERT,
    Outcome,
    Reloader,
    ReloaderConfig,
    resolve_sources,
)

CERT, KEY = "STAR.iklim.co.full.crt", "STAR.iklim.co_key.pem"


@pytest.fixture(scope="module")
def ca() -> devpki.Issued:
    return devpki.make_ca()


def write_source(cfg: ReloaderConfig, cert_pem: bytes, key_pem: bytes) -> None:
    cfg.source_cert.parent.mkdir(parents=True, exist_ok=True)
    cfg.source_cert.write_bytes(cert_pem)
    cfg.source_key.write_bytes(key_pem)


def renew(cfg: ReloaderConfig, ca: devpki.Issued, days: float = 90, **kw: object) -> devpki.Issued:
    leaf = devpki.make_leaf(ca, days=days, **kw)  # type: ignore[arg-type]
    write_source(cfg, devpki.full_chain(leaf, ca), leaf.key_pem)
    return leaf


@pytest.fixture
def cfg(tmp_path: Path) -> ReloaderConfig:
    (tmp_path / "dest").mkdir()
    return ReloaderConfig(
        source_cert=tmp_path / "src" / "fullchain.pem",
        source_key=tmp_path / "src" / "privkey.pem",
        dest_dir=tmp_path / "dest",
        settle=0.0,
        settle_deadline=1.0,
    )


class Events(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.setFormatter(logs.KeyValueFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    @property
    def names(self) -> list[str]:
        return [r.getMessage() for r in self.records]

    @property
    def text(self) -> str:
        return "\n".join(self.format(r) for r in self.records)


@contextlib.contextmanager
def captured() -> Iterator[Events]:
    """The package's events, whatever another test did to propagation."""
    logger = logging.getLogger("entrypoint")
    handler = Events()
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


def make(cfg: ReloaderConfig, sleep: Callable[[float], object] = lambda s: None) -> Reloader:
    return Reloader(cfg, sleep, lambda: False)


def snapshot(directory: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(directory.iterdir())}


def test_publishes_with_modes_and_manifest(cfg: ReloaderConfig, ca: devpki.Issued) -> None:
    leaf = renew(cfg, ca)
    assert make(cfg).poll() is Outcome.PUBLISHED
    dest = cfg.dest
    assert dest.cert.read_bytes() == devpki.full_chain(leaf, ca)
    assert dest.key.read_bytes() == leaf.key_pem
    assert stat.S_IMODE(dest.cert.stat().st_mode) == 0o644
    assert stat.S_IMODE(dest.key.stat().st_mode) == 0o600
    manifest = read_manifest(cfg.dest_dir)
    assert manifest is not None
    assert manifest.matches(dest.cert.read_bytes(), dest.key.read_bytes())
    assert manifest.not_after == leaf.cert.not_valid_after_utc
    assert sorted(p.name for p in cfg.dest_dir.iterdir()) == sorted([CERT, KEY, MANIFEST_NAME])


def test_second_reloader_publishes_nothing(cfg: ReloaderConfig, ca: devpki.Issued) -> None:
    renew(cfg, ca)
    make(cfg).poll()
    before = snapshot(cfg.dest_dir)
    assert make(cfg).poll() is Outcome.UP_TO_DATE
    assert snapshot(cfg.dest_dir) == before


def test_renewal_replaces(cfg: ReloaderConfig, ca: devpki.Issued) -> None:
    renew(cfg, ca)
    reloader = make(cfg)
    reloader.poll()
    leaf = renew(cfg, ca, days=91)
    assert reloader.poll() is Outcome.PUBLISHED
    assert cfg.dest.key.read_bytes() == leaf.key_pem


def test_tampered_destination_is_republished(cfg: ReloaderConfig, ca: devpki.Issued) -> None:
    renew(cfg, ca)
    make(cfg).poll()
    cfg.dest.cert.write_bytes(b"junk")
    assert make(cfg).poll() is Outcome.PUBLISHED


@pytest.mark.parametrize(
    ("spoil", "error"),
    [
        ("mismatch", CertificateMismatch),
        ("expired", CertificateNotCurrentlyValid),
        ("garbage", CertificateParseError),
        ("older", DowngradeRefused),
        ("missing", CertificateMissing),
    ],
)
def test_refused_pairs_leave_destination_intact(
    cfg: ReloaderConfig, ca: devpki.Issued, spoil: str, error: type[Exception]
) -> None:
    renew(cfg, ca)
    make(cfg).poll()
    before = snapshot(cfg.dest_dir)
    if spoil == "mismatch":
        other = devpki.make_leaf(ca, days=120)
        write_source(cfg, cfg.source_cert.read_bytes(), other.key_pem)
    elif spoil == "expired":
        past = dt.datetime.now(dt.UTC) - dt.timedelta(days=200)
        renew(cfg, ca, days=100, valid_from=past)
    elif spoil == "garbage":
        write_source(cfg, b"-----BEGIN CERTIFICATE-----\nnope\n", b"garbage")
    elif spoil == "older":
        renew(cfg, ca, days=30)
    else:
        cfg.source_key.unlink()
    with pytest.raises(error):
        make(cfg).poll()
    assert snapshot(cfg.dest_dir) == before


def test_downgrade_allowed_when_told(cfg: ReloaderConfig, ca: devpki.Issued) -> None:
    renew(cfg, ca)
    make(cfg).poll()
    leaf = renew(cfg, ca, days=30)
    allowed = ReloaderConfig(**{**cfg.__dict__, "allow_downgrade": True})
    assert make(allowed).poll() is Outcome.PUBLISHED
    assert cfg.dest.key.read_bytes() == leaf.key_pem


def test_downgrade_against_files_without_manifest(cfg: ReloaderConfig, ca: devpki.Issued) -> None:
    """An older deployment published files but no manifest: their expiry still counts."""
    renew(cfg, ca)
    make(cfg).poll()
    (cfg.dest_dir / MANIFEST_NAME).unlink()
    renew(cfg, ca, days=30)
    with pytest.raises(DowngradeRefused):
        make(cfg).poll()


def test_missing_destination(cfg: ReloaderConfig, ca: devpki.Issued) -> None:
    renew(cfg, ca)
    cfg.dest_dir.rmdir()
    with pytest.raises(DestinationUnavailable, match="not a directory"):
        make(cfg).poll()
    assert not cfg.dest_dir.exists()
    cfg.dest_dir.mkdir()
    assert make(cfg).poll() is Outcome.PUBLISHED


def test_failed_publish_leaves_no_temp_file_and_old_pair(
    cfg: ReloaderConfig, ca: devpki.Issued, monkeypatch: pytest.MonkeyPatch
) -> None:
    renew(cfg, ca)
    make(cfg).poll()
    before = snapshot(cfg.dest_dir)
    renew(cfg, ca, days=91)
    real_fsync = os.fsync
    calls = []

    def failing_fsync(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 2:  # the key's temp file: the cert's is already on disk
            raise OSError(28, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(files.os, "fsync", failing_fsync)
    with pytest.raises(DestinationUnavailable, match="No space left"):
        make(cfg).poll()
    monkeypatch.undo()
    assert snapshot(cfg.dest_dir) == before


def test_settles_before_validating(cfg: ReloaderConfig, ca: devpki.Issued) -> None:
    """certbot swaps its links one at a time: publish only what stayed still for a settle."""
    renew(cfg, ca)
    steps: list[devpki.Issued] = []

    def sleep(seconds: float) -> None:
        if len(steps) < 2:
            steps.append(renew(cfg, ca, days=90 + len(steps)))

    assert make(cfg, sleep).poll() is Outcome.PUBLISHED
    assert len(steps) == 2
    assert cfg.dest.key.read_bytes() == steps[-1].key_pem


def test_repeated_problem_logged_once(cfg: ReloaderConfig, ca: devpki.Issued) -> None:
    leaf = devpki.make_leaf(ca)
    other = devpki.make_leaf(ca)
    write_source(cfg, devpki.full_chain(leaf, ca), other.key_pem)
    reloader = make(cfg)
    with captured() as events:
        for _ in range(3):
            reloader.poll_and_report()
        write_source(cfg, devpki.full_chain(leaf, ca), leaf.key_pem)
        reloader.poll_and_report()
        reloader.poll_and_report()
    assert events.names == ["refused", "published"]
    assert "does not match the leaf" in events.text
    for secret in (leaf.key_pem, other.key_pem):
        assert secret.decode().splitlines()[1] not in events.text


def test_resolve_sources() -> None:
    assert resolve_sources(None, None, {})[0] == DEFAULT_SOURCE_CERT
    lineage = {"RENEWED_LINEAGE": "/etc/letsencrypt/live/iklim.co"}
    assert resolve_sources(None, None, lineage) == (
        Path("/etc/letsencrypt/live/iklim.co/fullchain.pem"),
        Path("/etc/letsencrypt/live/iklim.co/privkey.pem"),
    )
    assert resolve_sources(Path("/a"), None, lineage)[0] == Path("/a")
