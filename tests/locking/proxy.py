"""A small TCP proxy in front of Redis for network fault injection (a toy toxiproxy).

Modes, switchable at any time:
    "pass"          forward both ways
    "drop_replies"  requests reach Redis (and take effect), replies are thrown away
    "blackhole"     nothing is forwarded either way (a partition)
"""
from __future__ import annotations

import socket
import threading


class RedisProxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.mode = "pass"
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, db: int) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
                server = socket.create_connection(self.upstream)
            except OSError:
                return
            self._sockets += [client, server]
            threading.Thread(target=self._pump, args=(client, server, "request"), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, "reply"), daemon=True).start()

    def _forwards(self, direction: str) -> bool:
        if self.mode == "blackhole":
            return False
        return self.mode == "pass" or direction == "request"

    def _pump(self, source: socket.socket, target: socket.socket, direction: str) -> None:
        while True:
            try:
                chunk = source.recv(65536)
            except OSError:
                chunk = b""
            if not chunk:
                for sock in (source, target):
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                return
            if self._forwards(direction):
                try:
                    target.sendall(chunk)
                except OSError:
                    return

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        for sock in self._sockets:
            sock.close()
