"""The tests' own HTTP servers (stand-ins for GitHub and for a registry), on a free loopback port,
served from a thread for the length of a `with` block."""

from __future__ import annotations

import threading
from http.server import ThreadingHTTPServer
from types import TracebackType
from typing import TypeVar

Self = TypeVar("Self", bound="LoopbackServer")


class LoopbackServer:
    def __init__(self, server: ThreadingHTTPServer) -> None:
        self._server = server
        # NOTE: polled often, so that a block ends without waiting half a second for the server to notice
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def __enter__(self: Self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
