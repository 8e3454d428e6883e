"""The distributor's test harness, shared by the integration and the Swarm tests: the shared
storage that the real reloader code publishes to, and real distributor processes."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from entrypoint import devpki
from entrypoint.manifest import read_manifest
from entrypoint.reloader import Reloader, ReloaderConfig
from tests.helpers.proc import Proc


class Shared:
    """The shared storage (the storagebox), published to by the real reloader code."""

    def __init__(self, root: Path, ca: devpki.Issued | None = None) -> None:
        self.ca = ca if ca is not None else devpki.make_ca()
        self.dir = root / "storagebox"
        self.dir.mkdir(parents=True)
        self.cfg = ReloaderConfig(
            source_cert=root / "swag" / "fullchain.pem",
            source_key=root / "swag" / "privkey.pem",
            dest_dir=self.dir,
            settle=0.0,
            allow_downgrade=True,
        )
        self.cfg.source_cert.parent.mkdir()
        self.days = 89.0

    def publish(self, days: float | None = None) -> devpki.Issued:
        """Publish a fresh pair valid for ``days`` (by default each one newer than the last)."""
        if days is None:
            self.days += 1
            days = self.days
        leaf = devpki.make_leaf(self.ca, days=days)
        self.cfg.source_cert.write_bytes(devpki.full_chain(leaf, self.ca))
        self.cfg.source_key.write_bytes(leaf.key_pem)
        Reloader(self.cfg, lambda s: None, lambda: False).poll()
        return leaf

    def fingerprint(self) -> str:
        """The fingerprint in the published manifest."""
        manifest = read_manifest(self.dir)
        assert manifest is not None
        return manifest.fingerprint


class Distributors:
    """Real ``vault-entrypoint distributor`` processes, each with its own node dir."""

    def __init__(self, tmp_path: Path, shared: Shared, interval: str, **settings: str) -> None:
        self.tmp_path = tmp_path
        self.shared = shared
        self.interval = interval
        self.settings = settings
        self.procs: list[Proc] = []

    @property
    def node(self) -> Path:
        """The default node dir."""
        return self.tmp_path / "node"

    def start(self, *args: str, node: str = "node", **extra: str) -> Proc:
        env = {k: v for k, v in os.environ.items() if not k.startswith("VAULT_")}
        env.update(
            VAULT_ENTRYPOINT_DISTRIBUTOR_SOURCE_DIR=str(self.shared.dir),
            VAULT_ENTRYPOINT_DISTRIBUTOR_DEST_DIR=str(self.tmp_path / node),
            VAULT_ENTRYPOINT_DISTRIBUTOR_INTERVAL=self.interval,
            VAULT_ADDR="none",
        )
        env.update(self.settings)
        env.update(extra)
        log = self.tmp_path / f"distributor-{len(self.procs)}-{node}.log"
        proc = Proc([sys.executable, "-m", "entrypoint", "distributor", *args], env, log)
        self.procs.append(proc)
        return proc

    def once(self, *args: str, **extra: str) -> tuple[int, str]:
        proc = self.start("--once", *args, **extra)
        return proc.wait_exit(60), proc.output()

    def close(self) -> None:
        for proc in self.procs:
            proc.stop()

    def output(self) -> str:
        return "\n".join(p.output() for p in self.procs)
