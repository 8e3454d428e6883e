"""cert-reloader as a real process: files, modes, mtimes, exit codes and its log lines."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import stat
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from entrypoint import devpki
from entrypoint.manifest import MANIFEST_NAME, read_manifest
from tests.helpers.proc import Proc

CERT, KEY = "STAR.iklim.co.full.crt", "STAR.iklim.co_key.pem"
INTERVAL = 0.3


@pytest.fixture(scope="module")
def ca() -> devpki.Issued:
    return devpki.make_ca()


class Swag:
    """SWAG's volume the way certbot fills it: live/ links into archive/ files."""

    def __init__(self, root: Path, ca: devpki.Issued) -> None:
        self.ca = ca
        self.archive = root / "etc" / "letsencrypt" / "archive" / "iklim.co"
        self.live = root / "etc" / "letsencrypt" / "live" / "iklim.co"
        self.archive.mkdir(parents=True)
        self.live.mkdir(parents=True)
        self.serial = 0
        self.leaf: devpki.Issued | None = None

    @property
    def cert(self) -> Path:
        return self.live / "fullchain.pem"

    @property
    def key(self) -> Path:
        return self.live / "privkey.pem"

    def _link(self, name: str, target: Path) -> None:
        tmp = self.live / f".{name}.tmp"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(os.path.relpath(target, self.live))
        tmp.replace(self.live / name)

    def stage(self, days: float = 90, **kw: object) -> tuple[Path, Path, devpki.Issued]:
        """Write a new archive version without touching the live links yet."""
        self.serial += 1
        leaf = devpki.make_leaf(self.ca, days=days, **kw)  # type: ignore[arg-type]
        cert = self.archive / f"fullchain{self.serial}.pem"
        key = self.archive / f"privkey{self.serial}.pem"
        cert.write_bytes(devpki.full_chain(leaf, self.ca))
        key.write_bytes(leaf.key_pem)
        return cert, key, leaf

    def renew(self, days: float = 90, **kw: object) -> devpki.Issued:
        cert, key, leaf = self.stage(days, **kw)
        self._link("privkey.pem", key)
        self._link("fullchain.pem", cert)
        self.leaf = leaf
        return leaf

    def link_key(self, key: Path) -> None:
        self._link("privkey.pem", key)

    def link_cert(self, cert: Path) -> None:
        self._link("fullchain.pem", cert)


@pytest.fixture
def swag(tmp_path: Path, ca: devpki.Issued) -> Swag:
    return Swag(tmp_path / "swag", ca)


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    path = tmp_path / "storagebox" / "ssl"
    path.mkdir(parents=True)
    return path


class Runner:
    def __init__(self, tmp_path: Path, swag: Swag, dest: Path) -> None:
        self.tmp_path = tmp_path
        self.swag = swag
        self.dest = dest
        self.procs: list[Proc] = []

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("VAULT_")}
        env.update(
            VAULT_ENTRYPOINT_RELOADER_SOURCE_CERT=str(self.swag.cert),
            VAULT_ENTRYPOINT_RELOADER_SOURCE_KEY=str(self.swag.key),
            VAULT_ENTRYPOINT_RELOADER_DEST_DIR=str(self.dest),
            VAULT_ENTRYPOINT_RELOADER_INTERVAL=str(INTERVAL),
            VAULT_ENTRYPOINT_RELOADER_SETTLE="0.1",
        )
        env.update(extra)
        return env

    def start(self, *args: str, **extra: str) -> Proc:
        log = self.tmp_path / f"reloader-{len(self.procs)}.log"
        proc = Proc([sys.executable, "-m", "entrypoint", "reloader", *args], self.env(**extra), log)
        self.procs.append(proc)
        return proc

    def once(self, *args: str, **extra: str) -> tuple[int, str]:
        proc = self.start("--once", *args, **extra)
        code = proc.wait_exit(60)
        return code, proc.output()

    def close(self) -> None:
        for proc in self.procs:
            proc.stop()

    def all_output(self) -> str:
        return "\n".join(p.output() for p in self.procs)


@pytest.fixture
def runner(tmp_path: Path, swag: Swag, dest: Path) -> Iterator[Runner]:
    r = Runner(tmp_path, swag, dest)
    try:
        yield r
    finally:
        r.close()
        # No key material in any line any reloader wrote during the test.
        text = r.all_output()
        for leaf_key in swag.archive.glob("privkey*.pem"):
            body = leaf_key.read_text().splitlines()[1]
            assert body not in text
        assert "PRIVATE KEY" not in text


def snapshot(directory: Path) -> dict[str, tuple[bytes, int, int]]:
    return {
        p.name: (p.read_bytes(), p.stat().st_mtime_ns, stat.S_IMODE(p.stat().st_mode))
        for p in sorted(directory.iterdir())
    }


def snapshot_files(directory: Path) -> dict[str, tuple[bytes, int]]:
    return {
        p.name: (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(directory.iterdir())
        if p.is_file()
    }


def assert_published(dest: Path, leaf: devpki.Issued, ca: devpki.Issued) -> None:
    assert (dest / CERT).read_bytes() == devpki.full_chain(leaf, ca)
    assert (dest / KEY).read_bytes() == leaf.key_pem
    assert stat.S_IMODE((dest / CERT).stat().st_mode) == 0o644
    assert stat.S_IMODE((dest / KEY).stat().st_mode) == 0o600
    manifest = read_manifest(dest)
    assert manifest is not None
    assert manifest.matches((dest / CERT).read_bytes(), (dest / KEY).read_bytes())
    assert sorted(p.name for p in dest.iterdir()) == sorted([CERT, KEY, MANIFEST_NAME])


def test_renewal_published_within_one_interval_and_restart_publishes_nothing(
    runner: Runner, swag: Swag, dest: Path
) -> None:
    swag.renew()
    first = runner.start()
    first.wait_for(r"event=published .*sha256=", deadline=15)
    assert swag.leaf is not None
    assert_published(dest, swag.leaf, swag.ca)

    leaf = swag.renew(days=91)
    renewed_at = dt.datetime.now(dt.UTC)
    first.wait_for(r"event=published ", count=2, deadline=15)
    manifest = read_manifest(dest)
    assert manifest is not None
    # Published within one interval plus the settle pause (and process scheduling slack).
    assert (manifest.published_at - renewed_at).total_seconds() < INTERVAL + 0.1 + 1.0
    assert_published(dest, leaf, swag.ca)

    first.signal(signal.SIGTERM)
    assert first.wait_exit(15) == 0
    assert "event=stopped signal=15" in first.output()

    before = snapshot(dest)
    second = runner.start()
    second.wait_for(r"event=up_to_date ", deadline=15)
    second.wait_for(r"event=started", deadline=5)
    # Absence cannot be waited for: let a few polls pass, then look.
    time.sleep(INTERVAL * 4)
    assert second.popen.poll() is None
    assert snapshot(dest) == before
    assert "event=published" not in second.output()


def test_half_written_source_publishes_nothing_until_consistent(
    runner: Runner, swag: Swag, dest: Path
) -> None:
    old = swag.renew()
    proc = runner.start()
    proc.wait_for(r"event=published ", deadline=15)
    before = snapshot(dest)

    cert, key, new = swag.stage(days=91)
    swag.link_key(key)  # certbot swapped the key link, not yet the cert link
    proc.wait_for(r"event=refused .*does not match the leaf", deadline=15)
    assert snapshot(dest) == before
    assert (dest / KEY).read_bytes() == old.key_pem

    swag.link_cert(cert)
    proc.wait_for(r"event=published ", count=2, deadline=15)
    assert_published(dest, new, swag.ca)


@pytest.mark.parametrize("spoil", ["mismatch", "expired", "garbage", "older"])
def test_bad_pairs_refused_destination_intact(
    runner: Runner, swag: Swag, dest: Path, spoil: str
) -> None:
    swag.renew()
    assert runner.once()[0] == 0
    before = snapshot(dest)
    if spoil == "mismatch":
        _, key, _ = swag.stage()
        swag.link_key(key)
        reason = "does not match the leaf"
    elif spoil == "expired":
        swag.renew(days=30, valid_from=dt.datetime.now(dt.UTC) - dt.timedelta(days=60))
        reason = "expired at"
    elif spoil == "garbage":
        cert, _, _ = swag.stage()
        cert.write_bytes(b"garbage\n")
        swag.link_cert(cert)
        reason = "does not hold a PEM certificate chain"
    else:
        swag.renew(days=30)
        reason = "before the published certificate"
    code, output = runner.once()
    assert code == 65, output
    assert reason in output
    assert "error=" in output
    assert snapshot(dest) == before

    proc = runner.start()
    proc.wait_for(rf"event=refused .*{reason}", deadline=15)
    assert snapshot(dest) == before


def test_missing_destination_recovers(runner: Runner, swag: Swag, dest: Path) -> None:
    swag.renew()
    dest.rmdir()
    code, output = runner.once()
    assert code == 69
    assert "DestinationUnavailable" in output
    assert not dest.exists()

    proc = runner.start()
    proc.wait_for(r"event=destination_unavailable .*not a directory", deadline=15)
    dest.mkdir()
    proc.wait_for(r"event=published ", deadline=15)
    assert swag.leaf is not None
    assert_published(dest, swag.leaf, swag.ca)


def test_once_exit_codes_and_certbot_deploy_hook(
    runner: Runner, swag: Swag, dest: Path, tmp_path: Path
) -> None:
    # Source missing: 66.
    code, output = runner.once()
    assert code == 66, output
    assert list(dest.iterdir()) == []

    # As a certbot deploy hook: only RENEWED_LINEAGE says where the pair is.
    leaf = swag.renew()
    hook_env = runner.env(RENEWED_LINEAGE=str(swag.live))
    del hook_env["VAULT_ENTRYPOINT_RELOADER_SOURCE_CERT"]
    del hook_env["VAULT_ENTRYPOINT_RELOADER_SOURCE_KEY"]
    proc = Proc(
        [sys.executable, "-m", "entrypoint", "reloader", "--once"],
        hook_env,
        tmp_path / "hook.log",
    )
    runner.procs.append(proc)
    assert proc.wait_exit(60) == 0, proc.output()
    assert "event=published" in proc.output()
    assert_published(dest, leaf, swag.ca)

    # Nothing new: still 0, nothing written.
    before = snapshot(dest)
    code, output = runner.once()
    assert code == 0
    assert "event=up_to_date" in output
    assert snapshot(dest) == before

    # Unwritable destination (the key's name is taken by a directory): 69, the old files
    # stay, no temp file is left behind.
    swag.renew(days=91)
    (dest / KEY).unlink()
    (dest / KEY).mkdir()
    before = snapshot_files(dest)
    code, output = runner.once()
    assert code == 69, output
    assert "cannot publish" in output
    assert snapshot_files(dest) == before
    assert sorted(p.name for p in dest.iterdir()) == sorted([CERT, KEY, MANIFEST_NAME])


def test_json_log_format(runner: Runner, swag: Swag) -> None:
    swag.renew()
    code, output = runner.once("--settle", "0", VAULT_ENTRYPOINT_LOG_FORMAT="json")
    assert code == 0
    events = [json.loads(line)["event"] for line in output.splitlines() if line.startswith("{")]
    assert events == ["started", "published"]
