"""The tests' own HTTP servers (stand-ins for GitHub and for a registry), on a free loopback port,
served from a thread for the length of a `with` block; and the wait for a server the tests started."""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
import time
from http.server import ThreadingHTTPServer
from types import TracebackType
from typing import TypeVar

import requests

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


def text_server(body: bytes) -> LoopbackServer:
    """A server answering every GET with `body` as Prometheus' text format (an exporter, an older server)."""
    from http.server import BaseHTTPRequestHandler

    class Text(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    return LoopbackServer(ThreadingHTTPServer(("127.0.0.1", 0), Text))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_ready(process: subprocess.Popen[str], url: str, what: str, tries: int = 300) -> None:
    """Until `url` answers 200; a process that ends first, or never gets there, fails the test with its output."""
    for _ in range(tries):
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.ConnectionError:
            time.sleep(0.05)
        if process.poll() is not None:
            break
    process.kill()  # NOTE: by its PID
    raise AssertionError(f"{what} did not start: {process.communicate()[0]}")


def stop(process: subprocess.Popen[str]) -> int:
    """SIGTERM, as Kubernetes stops a pod, then SIGKILL if it has not ended in 30 s; its exit code."""
    process.send_signal(signal.SIGTERM)  # NOTE: by its PID
    try:
        return process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise
