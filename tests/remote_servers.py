"""Real servers on 127.0.0.1 for the remote tests, started and stopped by the tests.

``HttpServer``: aiohttp's static file handler (it serves ranges, ETags and If-Match, as web
servers do), with a log of every request and the body bytes each response carried, and a switch
that makes the server stop answering (to test timeouts). ``S3Server``: moto's standalone
S3-compatible server.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from pathlib import Path
from typing import Any

import attrs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@attrs.define
class Request:
    method: str
    path: str
    range: str | None
    status: int
    body_bytes: int


class HttpServer:
    """Serves the files of ``root`` at ``http://127.0.0.1:<port>/``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.log: list[Request] = []
        self.hang = False
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: Any = None
        self._thread: threading.Thread | None = None

    # bytes of response bodies sent for GET requests (HEAD carries none)
    @property
    def transferred(self) -> int:
        return sum(r.body_bytes for r in self.log if r.method == "GET")

    def gets(self) -> list[Request]:
        return [r for r in self.log if r.method == "GET"]

    def start(self) -> HttpServer:
        from aiohttp import web

        async def on_prepare(request: web.Request, response: web.StreamResponse) -> None:
            length = response.headers.get("Content-Length")
            self.log.append(
                Request(
                    request.method,
                    request.path,
                    request.headers.get("Range"),
                    response.status,
                    int(length) if length and request.method == "GET" else 0,
                )
            )

        @web.middleware
        async def maybe_hang(request: web.Request, handler: Any) -> Any:
            if self.hang:
                await asyncio.sleep(3600)
            return await handler(request)

        app = web.Application(middlewares=[maybe_hang])
        app.on_response_prepare.append(on_prepare)
        app.router.add_static("/", self.root)
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.1)
            loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", self.port)
            loop.run_until_complete(site.start())
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the HTTP test server did not start")
        return self

    def stop(self) -> None:
        self.hang = False
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop = None


class S3Server:
    """moto's S3-compatible server on 127.0.0.1."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: Any = None

    def start(self) -> S3Server:
        from moto.server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    @property
    def storage_options(self) -> dict[str, Any]:
        return {
            "key": "testing",
            "secret": "testing",
            "client_kwargs": {"endpoint_url": self.url, "region_name": "us-east-1"},
        }


# -- a server that misbehaves on request -----------------------------------------------------------
@attrs.define
class Served:
    """One file of :class:`VersionedServer`: its versions (bytes), or, for a huge file, a size and
    a pattern repeated to fill it (generated as it is sent, never held)."""

    versions: list[bytes] = attrs.Factory(list)
    size: int = 0
    pattern: bytes = b""
    current: int = 0
    switch_after: int | None = None  # GET responses after which the next version is served
    gets: int = 0


class VersionedServer:
    """A small HTTP/1.1 server (Python's ``http.server``, threaded) on 127.0.0.1 that serves
    byte ranges with an ETag and a Last-Modified per version — and does what real servers
    sometimes do, when told to:

    * ``switch_after`` (per file): after that many GET responses, serve the next version (a new
      ETag) — and ignore ``If-Match`` while doing so (``strict_if_match`` False);
    * ``strict_if_match``: answer 412 unless ``If-Match`` matches the ETag by the *strong*
      comparison of RFC 9110 (a weak ETag never does);
    * ``weak_etag``: ETags ``W/"…"``;
    * ``oversize``: a 206 reply carrying that many bytes more than the range asked for (the
      Content-Range names the range asked for);
    * ``ignore_ranges``: answer every GET with 200 and the whole file;
    * ``lie_head``: the size a HEAD request is told, by file name;
    * ``hide_length``: names of files whose GET replies carry no Content-Length (the body ends
      when the connection closes).

    ``log`` records ``(method, path, range, status, body bytes actually sent)``.
    """

    def __init__(self) -> None:
        self.files: dict[str, Served] = {}
        self.strict_if_match = False
        self.weak_etag = False
        self.oversize = 0
        self.ignore_ranges = False
        self.lie_head: dict[str, int] = {}  # the size HEAD says, by file name
        self.hide_length: set[str] = set()  # files whose GET says no length (ends by closing)
        self.log: list[Request] = []
        self._httpd: Any = None
        self._thread: threading.Thread | None = None
        self.url = ""

    def put(self, name: str, *versions: bytes, switch_after: int | None = None) -> str:
        self.files[name] = Served(list(versions), len(versions[0]), switch_after=switch_after)
        return f"{self.url}/{name}"

    def put_huge(self, name: str, size: int, pattern: bytes) -> str:
        self.files[name] = Served([], size, pattern)
        return f"{self.url}/{name}"

    def etag(self, name: str) -> str:
        tag = f'"{name}-v{self.files[name].current}"'
        return "W/" + tag if self.weak_etag else tag

    def start(self) -> VersionedServer:
        import http.server

        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_HEAD(self) -> None:
                self._answer(body=False)

            def do_GET(self) -> None:
                self._answer(body=True)

            def _answer(self, *, body: bool) -> None:
                name = self.path.lstrip("/").split("?", 1)[0]
                served = server.files.get(name)
                rng = self.headers.get("Range")
                if served is None:
                    self._status(404, rng)
                    return
                size = served.size
                etag = server.etag(name)
                if body and server.strict_if_match and "If-Match" in self.headers:
                    wanted = [t.strip() for t in self.headers["If-Match"].split(",")]
                    strong = etag if not etag.startswith("W/") else None
                    if strong is None or strong not in wanted:
                        self._status(412, rng)
                        return
                start, stop = 0, size
                status = 200
                if rng and body and not server.ignore_ranges:
                    first, _, last = rng.removeprefix("bytes=").partition("-")
                    start = int(first)
                    stop = min(int(last) + 1, size) if last else size
                    if start >= size:
                        self._status(416, rng)
                        return
                    status = 206
                extra = server.oversize if status == 206 else 0
                self.send_response(status)
                length = stop - start + extra
                if not body and name in server.lie_head:
                    length = server.lie_head[name]
                if body and name in server.hide_length:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                else:
                    self.send_header("Content-Length", str(length))
                self.send_header("ETag", etag)
                day = 1 + served.current % 9
                self.send_header("Last-Modified", f"Mon, 0{day} Jan 2024 00:00:00 GMT")
                self.send_header("Accept-Ranges", "bytes")
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{stop - 1}/{size}")
                self.end_headers()
                sent = 0
                if body:
                    try:
                        for piece in self._body(served, start, stop, extra):
                            self.wfile.write(piece)
                            sent += len(piece)
                    except (BrokenPipeError, ConnectionResetError):
                        self.close_connection = True
                    served.gets += 1
                    if served.switch_after is not None and served.gets >= served.switch_after:
                        served.switch_after = None
                        served.current = min(served.current + 1, len(served.versions) - 1)
                server.log.append(Request(self.command, "/" + name, rng, status, sent))

            def _body(self, served: Served, start: int, stop: int, extra: int) -> Any:
                step = 1 << 16
                if served.versions:
                    data = served.versions[served.current]
                    for pos in range(start, stop, step):
                        yield data[pos : min(pos + step, stop)]
                else:
                    block = served.pattern * (step // len(served.pattern) + 1)
                    pos = start
                    while pos < stop:
                        k = min(step, stop - pos)
                        off = pos % len(served.pattern)
                        yield block[off : off + k] if off + k <= len(block) else block[:k]
                        pos += k
                for pos in range(0, extra, step):
                    yield bytes(min(step, extra - pos))

            def _status(self, code: int, rng: str | None) -> None:
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()
                server.log.append(Request(self.command, self.path, rng, code, 0))

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client that closes early (dwf cuts a body off on purpose)

        self._httpd = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def gets(self, name: str) -> list[Request]:
        return [r for r in self.log if r.method == "GET" and r.path == "/" + name]


class StaticServer:
    """``python -m http.server`` itself (ThreadingHTTPServer + SimpleHTTPRequestHandler) serving
    ``root``: it ignores ``Range`` and answers every GET with 200 and the whole file."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._httpd: Any = None
        self.url = ""

    def start(self) -> StaticServer:
        import functools
        import http.server

        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client that closes early (dwf cuts a body off on purpose)

        self._httpd = Server(("127.0.0.1", 0), functools.partial(Handler, directory=str(self.root)))
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
