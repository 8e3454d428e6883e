"""Helpers of the distributor's Docker tests: a tiny local image, published pairs, processes."""

from __future__ import annotations

import hashlib
import io
import os
import secrets
import shutil
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from entrypoint import devpki
from entrypoint.reloader import Reloader, ReloaderConfig
from tests.helpers import need
from tests.helpers.proc import Proc
from tests.swarm import stack

BUSYBOX = Path("/bin/busybox")
# Keeps running, answers SIGHUP with a line on stdout (busybox sh; `wait` is interruptible).
HUP_SCRIPT = 'trap "echo got-hup" HUP; echo ready; while :; do sleep 1 & wait $!; done'


def unique(prefix: str = "vetest") -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def busybox_image(client: Any) -> str:
    """A one-binary image imported from the host's static busybox (no registry needed)."""
    found = shutil.which("busybox") or (str(BUSYBOX) if BUSYBOX.exists() else None)
    need(found is not None, "a static busybox (Debian: busybox-static) to build the test image")
    data = Path(str(found)).read_bytes()
    tag = hashlib.sha256(data).hexdigest()[:12]
    name = f"vault-entrypoint-test/busybox:{tag}"
    import docker.errors

    try:
        client.images.get(name)
        return name
    except docker.errors.ImageNotFound:
        pass
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for directory in ("bin", "tmp"):
            info = tarfile.TarInfo(directory)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if directory == "tmp" else 0o755
            tar.addfile(info)
        info = tarfile.TarInfo("bin/busybox")
        info.size = len(data)
        info.mode = 0o755
        tar.addfile(info, io.BytesIO(data))
        for applet in ("sh", "sleep", "echo"):
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type = tarfile.SYMTYPE
            link.linkname = "busybox"
            tar.addfile(link)
    repository, _, tag_part = name.partition(":")
    client.api.import_image_from_data(buf.getvalue(), repository=repository, tag=tag_part)
    return name


class Shared:
    """The shared storage, published to by the real reloader code."""

    def __init__(self, root: Path) -> None:
        self.ca = devpki.make_ca()
        self.dir = root / "storagebox"
        self.dir.mkdir(parents=True)
        self.cfg = ReloaderConfig(
            source_cert=root / "swag" / "fullchain.pem",
            source_key=root / "swag" / "privkey.pem",
            dest_dir=self.dir,
            settle=0.0,
        )
        self.cfg.source_cert.parent.mkdir()
        self.days = 90.0

    def publish(self) -> str:
        """Publish a fresh pair (each newer than the last); returns its fingerprint."""
        self.days += 1
        leaf = devpki.make_leaf(self.ca, days=self.days)
        self.cfg.source_cert.write_bytes(devpki.full_chain(leaf, self.ca))
        self.cfg.source_key.write_bytes(leaf.key_pem)
        Reloader(self.cfg, lambda s: None, lambda: False).poll()
        from entrypoint.manifest import read_manifest

        manifest = read_manifest(self.dir)
        assert manifest is not None
        return manifest.fingerprint


class Distributors:
    """Real ``vault-entrypoint distributor`` processes, each with its own node dir."""

    def __init__(self, tmp_path: Path, shared: Shared) -> None:
        self.tmp_path = tmp_path
        self.shared = shared
        self.procs: list[Proc] = []

    def start(self, node: str, *args: str, **extra: str) -> Proc:
        env = {k: v for k, v in os.environ.items() if not k.startswith("VAULT_")}
        env.update(
            VAULT_ENTRYPOINT_DISTRIBUTOR_SOURCE_DIR=str(self.shared.dir),
            VAULT_ENTRYPOINT_DISTRIBUTOR_DEST_DIR=str(self.tmp_path / node),
            VAULT_ENTRYPOINT_DISTRIBUTOR_INTERVAL="0.2",
            VAULT_ADDR="none",
        )
        env.update(extra)
        log = self.tmp_path / f"distributor-{len(self.procs)}-{node}.log"
        proc = Proc([sys.executable, "-m", "entrypoint", "distributor", *args], env, log)
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.procs:
            proc.stop()

    def output(self) -> str:
        return "\n".join(p.output() for p in self.procs)


def eventually(check: Callable[[], Any], deadline: float, what: str) -> Any:
    """The stack helpers' poll, at the faster interval these single-process checks want."""
    return stack.eventually(check, deadline, what, interval=0.1)
