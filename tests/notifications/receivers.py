"""Servers on 127.0.0.1 that real apprise delivers to: a JSON webhook receiver (which can answer
500 or hang until released) and an SMTP server (aiosmtpd)."""
from __future__ import annotations

import json
import socket
import threading
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiosmtpd.controller import Controller


@dataclass
class Webhook:
    """Records each JSON body posted to it. `mode`: "ok", "error" (HTTP 500) or "hang" (holds
    the request until `release()`)."""

    mode: str = "ok"
    posts: list[dict] = field(default_factory=list)
    attempts: int = 0
    hanging: threading.Event = field(default_factory=threading.Event)  # a request is being held
    _release: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> Webhook:
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with hook._lock:
                    hook.attempts += 1
                if hook.mode == "hang":
                    hook.hanging.set()
                    hook._release.wait(30)
                    return
                if hook.mode == "error":
                    self.send_response(500)
                    self.end_headers()
                    return
                with hook._lock:
                    hook.posts.append({"path": self.path, **json.loads(body)})
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def url(self, path: str = "/hook/s3cr3t-path-T0KEN", **params: str) -> str:
        query = "&".join(f"{k}={v}" for k, v in params.items())
        return f"json://127.0.0.1:{self.port}{path}" + (f"?{query}" if query else "")

    def release(self) -> None:
        self._release.set()

    def stop(self) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()

    def messages(self, title_part: str = "") -> list[dict]:
        with self._lock:
            return [p for p in self.posts if title_part in p.get("title", "")]


class _Mailbox:
    def __init__(self) -> None:
        self.mails: list = []

    async def handle_DATA(self, server, session, envelope):
        self.mails.append(message_from_bytes(envelope.content, policy=policy.default))
        return "250 OK"


class Smtp:
    def start(self) -> Smtp:
        with socket.socket() as probe:  # aiosmtpd checks its port by connecting to it: it needs a number
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.box = _Mailbox()
        self.controller = Controller(self.box, hostname="127.0.0.1", port=self.port)
        self.controller.start()
        return self

    def url(self) -> str:
        return f"mailto://127.0.0.1:{self.port}?from=bot@example.com&to=ops@example.com&mode=insecure"

    @property
    def mails(self) -> list:
        return self.box.mails

    def text_of(self, mail) -> str:
        return mail.get_body(preferencelist=("plain",)).get_content()

    def stop(self) -> None:
        self.controller.stop()
