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
