"""A threaded HTTP file server on 127.0.0.1 with Range support and fault injection, for download tests.

    with FileServer() as server:
        url = server.add("/files/a.bin", data)
        server.fail_next("/files/a.bin", "drop")     # next GET: half the body, then the socket closes
        ...
        server.gets("/files/a.bin")                  # the logged GETs (method, path, headers)

One-shot faults (``fail_next``, consumed one per GET, in order):
  "drop"      send half of the body, then close the connection (a connection lost mid-body)
  "truncate"  same, but a clean close (a body shorter than its Content-Length)
  "500"/"503" answer with that status
Persistent behaviour: ``ignore_range`` (always 200 with the whole file), ``truncate_always``
(every response stops at half its body), a path never added answers 404, ``gate`` (the body waits
until the event is set), ``throttle`` (seconds slept per 16 KiB).
"""

from __future__ import annotations

import hashlib
import re
import socket
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

CHUNK = 16 * 1024


@dataclass
class Logged:
    method: str
    path: str
    headers: dict[str, str]

    @property
    def range(self) -> str | None:
        return self.headers.get("Range")


@dataclass
class _Entry:
    data: bytes
    faults: deque = field(default_factory=deque)
    ignore_range: bool = False
    truncate_always: bool = False
    gate: threading.Event | None = None


class FileServer:
    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()
        self.log: list[Logged] = []
        self.throttle = 0.0
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- configuration
    def add(self, path: str, data: bytes, **options) -> str:
        with self._lock:
            self._entries[path] = _Entry(data=data, **options)
        return self.url(path)

    def entry(self, path: str) -> _Entry:
        return self._entries[path]

    def fail_next(self, path: str, *faults: str) -> None:
        with self._lock:
            self._entries[path].faults.extend(faults)

    def url(self, path: str = "/") -> str:
        assert self._httpd is not None
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}{path}"

    def gets(self, path: str) -> list[Logged]:
        with self._lock:
            return [r for r in self.log if r.method == "GET" and r.path == path]

    # -- lifecycle
    def __enter__(self) -> FileServer:
        handler = type("Handler", (_Handler,), {"owner": self})
        self._httpd = _QuietServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        assert self._httpd is not None
        for entry in self._entries.values():
            if entry.gate is not None:
                entry.gate.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    # -- used by the handler
    def _take(
        self, method: str, path: str, headers: dict[str, str]
    ) -> tuple[_Entry | None, str | None]:
        with self._lock:
            self.log.append(Logged(method, path, headers))
            entry = self._entries.get(path)
            fault = (
                entry.faults.popleft()
                if entry is not None and entry.faults and method == "GET"
                else None
            )
        return entry, fault


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:  # clients hanging up are expected here
        pass


_RANGE = re.compile(r"bytes=(\d+)-$")


class _Handler(BaseHTTPRequestHandler):
    owner: FileServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args) -> None:  # quiet
        pass

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def do_GET(self) -> None:
        self._serve(head=False)

    def _serve(self, head: bool) -> None:
        path = urlsplit(self.path).path
        entry, fault = self.owner._take(self.command, path, dict(self.headers.items()))
        if fault in ("500", "503"):
            self._plain(int(fault), b"server trouble\n")
            return
        if entry is None:
            self._plain(404, b"not found\n")
            return
        data = entry.data
        etag = '"' + hashlib.sha256(data).hexdigest()[:16] + '"'
        start, status = 0, 200
        match = _RANGE.match(self.headers.get("Range", ""))
        if_range = self.headers.get("If-Range")
        if match and not entry.ignore_range and (if_range is None or if_range == etag):
            start = int(match.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        body = data[start:]
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", etag)
        if not entry.ignore_range:
            self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        if head:
            return
        if entry.gate is not None:
            entry.gate.wait(timeout=60)
        cut = fault in ("drop", "truncate") or entry.truncate_always
        limit = len(body) // 2 if cut else len(body)
        try:
            for offset in range(0, limit, CHUNK):
                self.wfile.write(body[offset : min(limit, offset + CHUNK)])
                if self.owner.throttle:
                    threading.Event().wait(self.owner.throttle)
            self.wfile.flush()
            if cut:
                self.close_connection = True
                if fault == "drop":
                    self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:  # the client went away
            self.close_connection = True

    def _plain(self, code: int, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
