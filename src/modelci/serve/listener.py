"""The socket side of `modelci serve`: uvicorn, with a drain on SIGTERM and limits that keep one client from
holding the server.

On SIGTERM the server drains first: `/v2/health/ready` answers 503 and every response says
`Connection: close`, while requests are still taken, so that load balancers (and Kubernetes' endpoints)
stop sending here and keep-alive clients leave their connections. Only then does the listener close;
requests already taken get `--shutdown-timeout` seconds to finish. SIGINT (Ctrl-C) and a second
SIGTERM skip the drain.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import time
from types import FrameType
from typing import TYPE_CHECKING

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from modelci import github
from modelci.errors import UsageError

if TYPE_CHECKING:
    from modelci.serve.app import Server

# NOTE: an idle keep-alive connection is closed after this; a drain at least as long leaves none that
# predates SIGTERM, so no client sends on a connection as the listener closes it
KEEP_ALIVE_S = 5


class HeaderTimeout(HttpToolsProtocol):
    """uvicorn's HTTP protocol, closing a connection that takes longer than `header_timeout_s` to send a
    request's headers (from when it opens, or from the previous response): uvicorn has no such limit, and a
    client sending a byte now and then would otherwise hold a connection, and a place under
    `--max-connections`, for ever.

    NOTE: uses HttpToolsProtocol's callbacks (connection_made, on_headers_complete, on_response_complete,
    connection_lost) and its `loop`, `pipeline` and `transport`; the tests open such a connection."""

    header_timeout_s = 10.0
    _timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # NOTE: as uvicorn's
        super().connection_made(transport)
        self._wait_for_headers()

    def on_headers_complete(self) -> None:
        self._headers_read()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        waiting = not self.pipeline  # NOTE: a pipelined request's headers are already in
        super().on_response_complete()
        if waiting and not self.transport.is_closing():
            self._wait_for_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._headers_read()
        super().connection_lost(exc)

    def _wait_for_headers(self) -> None:
        self._headers_read()
        self._timer = self.loop.call_later(self.header_timeout_s, self._too_slow)

    def _headers_read(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _too_slow(self) -> None:
        self._timer = None
        if not self.transport.is_closing():
            self.transport.close()


class DrainingServer(uvicorn.Server):
    """uvicorn's server, with the drain on the first SIGTERM."""

    def __init__(self, config: uvicorn.Config, app: Server, drain_s: float) -> None:
        super().__init__(config)
        self.app, self.drain_s = app, drain_s
        self._drain_ends: float | None = None
        self._announced = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig == signal.SIGTERM and self._drain_ends is None and self.drain_s > 0:
            # NOTE: a signal handler: only flags here; the event loop's tick does the rest
            self._drain_ends = time.monotonic() + self.drain_s
            self.app.draining = True
            return
        super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        if self._drain_ends is not None and not self.should_exit:
            if not self._announced:
                self._announced = True
                github.log(f"SIGTERM: draining for {self.drain_s:g} s: /v2/health/ready answers 503, requests are "
                           "still served; then the listener closes")
            if time.monotonic() >= self._drain_ends:
                # NOTE: as if the SIGTERM came now: uvicorn closes the listener, and raises the signal again at exit
                super().handle_exit(signal.SIGTERM, None)
        return await super().on_tick(counter)


def run(app: Server, host: str, port: int, *, drain_s: float, shutdown_timeout_s: int, max_connections: int,
        header_timeout_s: float) -> None:
    """Serve `app` until SIGTERM (drained) or SIGINT."""
    protocol = type("HeaderTimeout", (HeaderTimeout,), {"header_timeout_s": header_timeout_s})
    config = uvicorn.Config(app, host=host, port=port, lifespan="on", log_level="warning", access_log=False,
                            http=protocol, timeout_keep_alive=KEEP_ALIVE_S, limit_concurrency=max_connections,
                            timeout_graceful_shutdown=shutdown_timeout_s, backlog=2048)
    DrainingServer(config, app, drain_s).run(sockets=[_listen(host, port)])


def _listen(host: str, port: int) -> socket.socket:
    """The listening socket, made here: uvicorn's own exits with code 3 (a registry failure, in modelci's
    codes) when the address is taken."""
    try:
        return socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET,
                                    backlog=2048)
    except OSError as exc:
        raise UsageError(f"modelci serve cannot listen on {host}:{port}: {exc.strerror or exc}",
                         hint="another process holds that port (choose another --port), or the address is not "
                              "one of this machine's (--host)") from None
