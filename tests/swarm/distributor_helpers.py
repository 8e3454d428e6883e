"""Helpers of the distributor's Docker tests: a tiny local image, published pairs, processes."""

from __future__ import annotations

import hashlib
import io
import secrets
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.helpers import need
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


def eventually(check: Callable[[], Any], deadline: float, what: str) -> Any:
    """The stack helpers' poll, at the faster interval these single-process checks want."""
    return stack.eventually(check, deadline, what, interval=0.1)
