"""The node's own port 8200, for a test that runs several replicas on one node.

In production each Vault node runs one replica, published in host mode on the node's port 8200,
so `--addr https://127.0.0.1:8200` on a manager keeps answering while Swarm replaces that
replica. On the test's single node the replicas publish random host ports (VAULT_PORT=0), which
change with every task. This relay gives the test that one stable local address: a real TCP
relay (TLS passes through untouched and is verified end to end) to the host port of the
lowest-slot running replica, looked up afresh for every connection.
"""

from __future__ import annotations

import selectors
import socket
import threading
from collections.abc import Callable

CONNECT_TIMEOUT = 5.0
IDLE_TIMEOUT = 120.0


class NodeRelay:
    """Listen on 127.0.0.1:<free port>; relay each connection to ``upstream()``'s port."""

    def __init__(self, upstream: Callable[[], int | None]) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.5)
        self.port = int(self.listener.getsockname()[1])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="node-relay", daemon=True)
        self._thread.start()

    @property
    def addr(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with client:
            port = self.upstream()
            if port is None:
                return  # no replica running: the client sees the connection closed
            try:
                server = socket.create_connection(("127.0.0.1", port), timeout=CONNECT_TIMEOUT)
            except OSError:
                return
            with server:
                self._pump(client, server)

    def _pump(self, client: socket.socket, server: socket.socket) -> None:
        """Copy bytes both ways until either side closes, or nothing moves for IDLE_TIMEOUT."""
        peers = {client: server, server: client}
        with selectors.DefaultSelector() as selector:
            for sock in peers:
                sock.settimeout(CONNECT_TIMEOUT)  # bounds each send; reads are ready when read
                selector.register(sock, selectors.EVENT_READ)
            while not self._stop.is_set():
                events = selector.select(timeout=IDLE_TIMEOUT)
                if not events:
                    return
                for key, _ in events:
                    source = key.fileobj
                    assert isinstance(source, socket.socket)
                    try:
                        data = source.recv(65536)
                        if not data:
                            return
                        peers[source].sendall(data)
                    except OSError:
                        return
