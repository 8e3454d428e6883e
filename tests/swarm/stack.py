"""One deployment of docker-stack-vault.yml for a test run: unique names, host dirs, secrets,
the seed's bootstrap (init one replica, create the secret, scale to three), observation
through `docker service logs`, `docker exec` and the health status, and a complete teardown.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import os
import re
import secrets
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from entrypoint import devpki, files
from entrypoint.config import DEFAULT_CERT_NAME, DEFAULT_KEY_NAME
from tests.swarm.noderelay import NodeRelay

ROOT = Path(__file__).resolve().parents[2]
STACK_FILE = ROOT / "docker-stack-vault.yml"
VAULT_UID, VAULT_GID = 100, 1000
SERVER_NAME = "vault.iklim.co"
SERVICE_LABEL = "com.docker.swarm.service.name"
TASK_NAME_LABEL = "com.docker.swarm.task.name"
# What `bao` needs inside a Vault container to talk to its own replica.
BAO_ENV = {
    "BAO_ADDR": "https://127.0.0.1:8200",
    "BAO_CACERT": f"/vault/certs/{DEFAULT_CERT_NAME}",
    "BAO_TLS_SERVER_NAME": SERVER_NAME,
    "VAULT_ADDR": "https://127.0.0.1:8200",
    "VAULT_CACERT": f"/vault/certs/{DEFAULT_CERT_NAME}",
    "VAULT_TLS_SERVER_NAME": SERVER_NAME,
}


def unique(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(3)}"


def docker_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120, check: bool = True
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        ["docker", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} -> {proc.returncode}\n{proc.stderr}")
    return proc


def eventually(check: Callable[[], Any], deadline: float, what: str, interval: float = 0.5) -> Any:
    """Poll ``check`` until it returns a truthy value; fail with ``what`` after ``deadline``."""
    end = time.monotonic() + deadline
    last: Any = None
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() > end:
            pytest.fail(f"timed out after {deadline:g}s waiting for {what} (last: {last!r})")
        time.sleep(interval)


@dataclass(frozen=True)
class Replica:
    """A running task container of the Vault service."""

    slot: int
    task_id: str
    container: Any

    @property
    def name(self) -> str:
        return f"vault-{self.slot}"


@dataclass(frozen=True)
class InitResult:
    key_b64: str
    key_hex: str
    root_token: str

    def texts(self) -> list[str]:
        return [self.key_b64, self.key_hex, self.root_token]


class Stack:
    """docker-stack-vault.yml deployed under a unique stack name with the test's own values."""

    def __init__(self, client: Any, image: str, root: Path) -> None:
        self.client = client
        self.image = image
        self.name = unique("vet")
        self.root = root
        self.node_dir = root / "opt-iklimco-ssl"
        self.storage_dir = root / "storagebox-ssl"
        self.swag_dir = root / "swag-config"
        self.swag_keys = self.swag_dir / "keys" / "letsencrypt"
        self.swag_volume = f"{self.name}-swag"
        self.data_volume = f"{self.name}-data"
        self.secrets: list[str] = []
        self.init: InitResult | None = None
        self.bootstrap_output = ""
        self.relay: NodeRelay | None = None
        self.ca = devpki.make_ca()
        self.days = 60.0
        self.env: dict[str, str] = {
            "VAULT_IMAGE": image,
            "VAULT_REPLICAS": "1",
            "VAULT_MAX_REPLICAS_PER_NODE": "3",
            "VAULT_NODE_CONSTRAINT": "node.role==manager",
            "RELOADER_NODE_CONSTRAINT": "node.role==manager",
            "VAULT_PORT_MODE": "host",
            # One replica: a fixed free port on the host. Several replicas on this one node
            # deploy with VAULT_PORT=0 (a random host port per task; see host_port()).
            "VAULT_PORT": str(_free_port()),
            "VAULT_CERTS_HOST_DIR": str(self.node_dir),
            "CERT_STORAGE_DIR": str(self.storage_dir),
            "SWAG_CONFIG_VOLUME": self.swag_volume,
            "VAULT_DATA_VOLUME": self.data_volume,
            "VAULT_SERVICE": self.service("vault"),
            "VAULT_HEALTH_INTERVAL": "2s",
            "VAULT_HEALTH_START_PERIOD": "120s",
            "VAULT_UPDATE_DELAY": "1s",
            "VAULT_UPDATE_MONITOR": "5s",
            "VAULT_STOP_GRACE_PERIOD": "20s",
            "VAULT_STOP_GRACE": "15",
            "VAULT_RESTART_DELAY": "1s",
            "VAULT_RETRY_MAX_WAIT": "1",
            # A joining replica answers the first unseal with "still sealed" while raft syncs;
            # the entrypoint takes that for a rejected key and backs off this long.
            "VAULT_REJECTED_BACKOFF": "2",
            "VAULT_WATCH_INTERVAL": "2",
            "VAULT_CERT_POLL_INTERVAL": "2",
            "RELOADER_INTERVAL": "1",
            "RELOADER_SETTLE": "0.5",
            "DISTRIBUTOR_INTERVAL": "1",
            "DISTRIBUTOR_VAULT_RELOAD": "restart",
        }

    # --- names ------------------------------------------------------------------------------

    def service(self, short: str) -> str:
        return f"{self.name}_{short}"

    def data_volumes(self) -> list[str]:
        return [f"{self.data_volume}-{slot}" for slot in range(1, 10)]

    # --- set-up -----------------------------------------------------------------------------

    def prepare(self) -> None:
        """Host dirs (owned as in production), the first certificate, SWAG's volume."""
        for directory in (self.node_dir, self.storage_dir, self.swag_keys):
            directory.mkdir(parents=True)
        # The node dir starts with a pair, as on a node that received one before.
        self.write_pair(self.node_dir, self.new_leaf())
        self.client.volumes.create(
            name=self.swag_volume,
            driver="local",
            driver_opts={"type": "none", "o": "bind", "device": str(self.swag_dir)},
            labels={"io.vault-entrypoint.test": self.name},
        )

    def new_leaf(self) -> devpki.Issued:
        """A fresh leaf for *.iklim.co, each one expiring later than the last."""
        self.days += 1
        return devpki.make_leaf(self.ca, days=self.days)

    def write_pair(self, directory: Path, leaf: devpki.Issued) -> None:
        """The pair as the distributor leaves it: chain and key readable by Vault's user."""
        devpki.write_pair(directory, DEFAULT_CERT_NAME, DEFAULT_KEY_NAME, leaf, self.ca)
        for name in (DEFAULT_CERT_NAME, DEFAULT_KEY_NAME):
            os.chown(directory / name, VAULT_UID, VAULT_GID)

    def write_swag(self, leaf: devpki.Issued) -> None:
        """A renewal as SWAG writes it: fullchain.pem and privkey.pem in its config volume."""
        files.atomic_write(self.swag_keys / "privkey.pem", leaf.key_pem, files.KEY_MODE)
        files.atomic_write(
            self.swag_keys / "fullchain.pem",
            devpki.full_chain(leaf, self.ca),
            files.CERT_MODE,
        )

    def create_secret(self, data: bytes) -> str:
        name = unique(f"{self.name}-unseal-")
        self.client.secrets.create(
            name=name, data=data, labels={"io.vault-entrypoint.test": self.name}
        )
        self.secrets.append(name)
        return name

    def deploy(self, **overrides: str) -> None:
        self.env.update(overrides)
        env = {**os.environ, **self.env}
        # Local images only: asking a registry for their digest fails here (none reachable).
        docker_cli(
            "stack",
            "deploy",
            "--prune",
            "--resolve-image",
            "never",
            "-c",
            str(STACK_FILE),
            self.name,
            env=env,
        )

    # --- observation ------------------------------------------------------------------------

    def replicas(self) -> list[Replica]:
        """Running Vault task containers, by slot."""
        found = []
        for container in self.client.containers.list(
            filters={"label": f"{SERVICE_LABEL}={self.service('vault')}", "status": "running"}
        ):
            task_name = container.labels.get(TASK_NAME_LABEL, "")
            parts = task_name.split(".")
            if len(parts) >= 3 and parts[-2].isdigit():
                found.append(Replica(int(parts[-2]), parts[-1], container))
        return sorted(found, key=lambda r: r.slot)

    def exec(
        self, replica: Replica, *cmd: str, env: dict[str, str] | None = None
    ) -> tuple[int, str]:
        import docker.errors

        try:
            result = replica.container.exec_run(list(cmd), environment=env or {}, demux=False)
        except docker.errors.APIError as exc:  # the task was stopped meanwhile
            return -1, str(exc)
        return int(result.exit_code), (result.output or b"").decode(errors="replace")

    def status(self, replica: Replica) -> dict[str, Any] | None:
        """`bao status` of one replica (None while its server does not answer)."""
        code, out = self.exec(replica, "bao", "status", "-format=json", env=BAO_ENV)
        if code not in (0, 2):
            return None
        try:
            return dict(json.loads(out))
        except ValueError:
            return None

    def health(self, replica: Replica) -> int:
        """Exit code of the image's own health command."""
        return self.exec(replica, "vault-entrypoint", "health")[0]

    def docker_health(self, replica: Replica) -> str:
        replica.container.reload()
        state = replica.container.attrs.get("State", {}).get("Health", {})
        return str(state.get("Status", "none"))

    def logs(self, short: str = "vault") -> str:
        """`docker service logs` of the service's running tasks, asked task by task.

        Swarm shows a task's lines only once it has been healthy, and with docker.io 20.10 a
        service-wide call can hang once replaced tasks exist: each call has a deadline and
        what arrived before it counts.
        """
        chunks = []
        for task in self.client.services.get(self.service(short)).tasks(
            filters={"desired-state": "running"}
        ):
            try:
                proc = docker_cli(
                    "service", "logs", "--no-trunc", "--timestamps", task["ID"], timeout=20
                )
                chunks.append(proc.stdout + proc.stderr)
            except subprocess.TimeoutExpired as exc:
                chunks.extend(_text(part) for part in (exc.stdout, exc.stderr))
        return "\n".join(chunks)

    def container_logs(self, short: str = "vault") -> str:
        """Every task container's own log, stopped ones included: what a failure dump needs."""
        chunks = []
        for container in self.client.containers.list(
            ignore_removed=True,
            all=True,
            filters={"label": f"{SERVICE_LABEL}={self.service(short)}"},
        ):
            task = container.labels.get(TASK_NAME_LABEL, container.name)
            text = container.logs(timestamps=True).decode(errors="replace")
            chunks.append(f"--- {task} ({container.status})\n{text}")
        return "\n".join(chunks)

    def all_logs(self) -> str:
        return "\n".join(
            f"===== {short} =====\n{self.container_logs(short)}"
            for short in ("vault", "cert-reloader", "cert-distributor")
        )

    def unsealed_events(self) -> dict[str, dict[str, str]]:
        """The entrypoint's ``event=unsealed`` lines, by task id."""
        events = {}
        for line in self.logs().splitlines():
            if "event=unsealed" not in line:
                continue
            match = re.search(r"\.(\d+)\.([a-z0-9]{20,})@", line)
            if match is None:
                continue
            fields = dict(re.findall(r"(\w+)=(\S+)", line))
            fields["slot"] = match.group(1)
            events[match.group(2)] = fields
        return events

    def all_unsealed(self, count: int) -> list[Replica] | None:
        """Every one of ``count`` replicas running, unsealed and healthy, else None."""
        replicas = self.replicas()
        if len(replicas) != count:
            return None
        for replica in replicas:
            status = self.status(replica)
            if status is None or status.get("sealed") is not False:
                return None
            if self.docker_health(replica) != "healthy":
                return None
        return replicas

    def converged(self, count: int, deadline: float, what: str) -> list[Replica]:
        replicas: list[Replica] = eventually(
            lambda: self.all_unsealed(count), deadline, what, interval=1.0
        )
        return replicas

    def update_state(self) -> str:
        """The Vault service's rolling-update state ('' before any update)."""
        service = self.client.services.get(self.service("vault"))
        return str((service.attrs.get("UpdateStatus") or {}).get("State", ""))

    def force_update_count(self) -> int:
        service = self.client.services.get(self.service("vault"))
        return int(service.attrs["Spec"]["TaskTemplate"].get("ForceUpdate", 0))

    def host_port(self, replica: Replica) -> int:
        """The random host-mode port (VAULT_PORT=0) this task's 8200 is published on."""
        replica.container.reload()
        bindings = replica.container.attrs["NetworkSettings"]["Ports"]["8200/tcp"]
        return int(bindings[0]["HostPort"])

    def served_leaf(self, replica: Replica) -> x509.Certificate:
        """The seed's `openssl s_client ... | openssl x509 -dates`, in Python: the leaf this
        replica serves on 127.0.0.1, verified against the test CA with SNI vault.iklim.co."""
        context = ssl.create_default_context(cadata=self.ca.cert_pem.decode())
        with (
            socket.create_connection(("127.0.0.1", self.host_port(replica)), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname=SERVER_NAME) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
        assert der is not None
        return x509.load_der_x509_certificate(der)

    def serves(self, leaf: devpki.Issued) -> list[Replica] | None:
        """Every replica serving ``leaf`` (and unsealed), else None."""
        replicas = self.replicas()
        if not replicas:
            return None
        for replica in replicas:
            try:
                served = self.served_leaf(replica)
            except (OSError, ssl.SSLError, KeyError, IndexError):
                return None
            if served.fingerprint(hashes.SHA256()) != leaf.cert.fingerprint(hashes.SHA256()):
                return None
        return replicas

    # --- the seed's bootstrap ---------------------------------------------------------------

    def node_port(self) -> int | None:
        """The host port of the lowest-slot running replica (what the relay forwards to)."""
        for replica in self.replicas():
            with contextlib.suppress(KeyError, IndexError, TypeError, ValueError):
                return self.host_port(replica)
        return None

    def run_bootstrap(
        self,
        addr: str,
        ca_file: Path,
        prefix: str,
        backup_dir: Path,
        *extra: str,
        wait: float = 120,
        unseal_wait: float = 240,
        timeout: float = 600,
    ) -> subprocess.CompletedProcess[str]:
        """`vault-entrypoint bootstrap` from the host for this stack's Vault service. The test
        process may carry VAULT_*/BAO_* settings: the command gets only its options."""
        from entrypoint.devserver import clean_env
        from tests.helpers.proc import ENTRYPOINT

        command = [str(ENTRYPOINT), "bootstrap", "--addr", addr, "--cacert", str(ca_file)]
        command += ["--tls-server-name", SERVER_NAME, "--certs-dir", str(self.node_dir)]
        command += ["--service", self.service("vault"), "--secret-prefix", prefix]
        command += ["--backup-dir", str(backup_dir), "--wait", f"{wait:g}"]
        command += ["--unseal-wait", f"{unseal_wait:g}", *extra]
        return subprocess.run(
            command, env=clean_env(), capture_output=True, text=True, timeout=timeout, check=False
        )

    def bootstrap(self, replicas: int = 3, deadline: float = 240) -> list[Replica]:
        """The seed's bootstrap with the project's own command: deploy the replicas (waiting,
        uninitialized), then run `vault-entrypoint bootstrap` from the host against the node's
        Vault port. It initializes one replica, writes the backup and the root token, creates the
        secret and swaps it into the service; Swarm rolls the replicas onto it, the others join
        through retry_join, and every replica is unsealed by its entrypoint."""
        if replicas > 1:
            self.env["VAULT_PORT"] = "0"  # several replicas on this one node: random host ports
        # The service needs a secret to start; bootstrap swaps its own in.
        placeholder = self.create_secret(b"not-initialized-yet\n")
        self.deploy(VAULT_UNSEAL_SECRET=placeholder, VAULT_REPLICAS=str(replicas))
        first: Replica = eventually(
            lambda: next((r for r in self.replicas() if self.status(r) is not None), None),
            90,
            "the first replica's server to answer",
        )
        status = self.status(first)
        assert status is not None and status["initialized"] is False, status
        self.relay = NodeRelay(self.node_port)
        work = self.root / "bootstrap"
        work.mkdir()
        ca_file = work / "ca.pem"
        ca_file.write_bytes(self.ca.cert_pem)
        token_file = work / "root-token"
        prefix = f"{self.name}-key"
        proc = self.run_bootstrap(
            self.relay.addr,
            ca_file,
            prefix,
            work,
            "--root-token-file",
            str(token_file),
            wait=90,
            unseal_wait=deadline,
            timeout=deadline + 120,
        )
        self.bootstrap_output = proc.stdout + proc.stderr
        created = [s.name for s in self.client.secrets.list() if s.name.startswith(prefix + "-")]
        self.secrets.extend(created)
        assert proc.returncode == 0, self.bootstrap_output
        [secret] = created
        [backup] = work.glob("*.keys")
        [key_b64] = [ln for ln in backup.read_text().splitlines() if not ln.startswith("#")]
        self.init = InitResult(
            key_b64, base64.b64decode(key_b64).hex(), token_file.read_text().strip()
        )
        # A later `docker stack deploy` keeps the secret that bootstrap swapped in.
        self.env["VAULT_UNSEAL_SECRET"] = secret
        return self.converged(replicas, 120, f"{replicas} replicas unsealed and healthy")

    # --- teardown ---------------------------------------------------------------------------

    def remove(self) -> None:
        """Remove the stack, then (once its containers are gone) its volumes and secrets."""
        if self.relay is not None:
            self.relay.close()
        docker_cli("stack", "rm", self.name, check=False)
        label = f"com.docker.stack.namespace={self.name}"
        end = time.monotonic() + 90
        while time.monotonic() < end:
            if not self.client.containers.list(
                all=True, filters={"label": label}, ignore_removed=True
            ):
                break
            time.sleep(1)
        for name in [*self.data_volumes(), self.swag_volume]:
            remove_retrying(lambda name=name: self.client.volumes.get(name).remove(force=True))
        for name in self.secrets:
            remove_retrying(lambda name=name: self.client.secrets.get(name).remove())
        shutil.rmtree(self.root, ignore_errors=True)


def remove_retrying(remove: Callable[[], Any], attempts: int = 30) -> None:
    """Remove a Docker object: done once it is gone; while it is still in use (by a container
    or service being removed) try again each second, ``attempts`` times."""
    import docker.errors

    for _ in range(attempts):
        try:
            remove()
            return
        except docker.errors.NotFound:
            return
        except docker.errors.APIError:
            time.sleep(1)


def _free_port() -> int:
    from entrypoint.devserver import free_port

    return free_port()


def _text(data: bytes | str | None) -> str:
    if isinstance(data, bytes):
        return data.decode(errors="replace")
    return data or ""


def parse_ts(text: str) -> dt.datetime:
    """Docker's RFC 3339 timestamps with nanoseconds, to a datetime."""
    text = text.rstrip("Z")
    if "." in text:
        head, frac = text.split(".", 1)
        text = f"{head}.{frac[:6]}"
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


def iter_lines(text: str, needle: str) -> Iterator[str]:
    return (line for line in text.splitlines() if needle in line)
