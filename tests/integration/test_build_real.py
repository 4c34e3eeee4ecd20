"""Real builds (issue 6): a multi-stage build that compiles a C program with gcc in a
Debian stage (bootstrapped here with mmdebstrap) and copies the binary into a busybox
stage; and a Python web app on a bootstrapped Debian image, served and asked."""

from __future__ import annotations

import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon import Daemon, running_daemon

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(shutil.which("mmdebstrap") is None, reason="mmdebstrap is not installed"),
]

C_DOCKERFILE = """\
FROM debian-build:bookworm AS compile
WORKDIR /src
COPY hello.c .
RUN gcc -O2 -static -o hello hello.c && ./hello
FROM busybox
COPY --from=compile /src/hello /usr/local/bin/hello
CMD ["hello"]
"""

HELLO_C = """\
#include <stdio.h>
int main(void) { puts("hello from C, compiled by moor build"); return 0; }
"""

PY_DOCKERFILE = """\
FROM debian-build:bookworm
WORKDIR /app
COPY app.py .
EXPOSE 8000
CMD ["python3", "app.py"]
"""

APP_PY = """\
from http.server import BaseHTTPRequestHandler, HTTPServer

class Hello(BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"Hello from a Python container!\\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

HTTPServer(("0.0.0.0", 8000), Hello).serve_forever()
"""


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with running_daemon(tmp_path_factory.mktemp("real") / "moor", busybox=True) as d:
        d.moor(
            "bootstrap", "debian:bookworm", "--include", "gcc,libc6-dev,python3",
            "-t", "debian-build:bookworm",
        )  # fmt: skip
        yield d


def test_a_c_program_compiled_in_debian_runs_in_busybox(daemon: Daemon, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(C_DOCKERFILE)
    (tmp_path / "hello.c").write_text(HELLO_C)
    built = daemon.moor("build", "-t", "hello-c:1", str(tmp_path)).stdout.decode()
    assert "hello from C" in built  # the RUN ran it
    assert daemon.moor("run", "--rm", "hello-c:1").stdout == (
        b"hello from C, compiled by moor build\n"
    )
    daemon.moor("rmi", "hello-c:1")


def test_a_python_web_app_serves_through_a_published_port(daemon: Daemon, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(PY_DOCKERFILE)
    (tmp_path / "app.py").write_text(APP_PY)
    daemon.moor("build", "-t", "pyweb:1", str(tmp_path))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    daemon.moor("run", "-d", "--name", "pyweb", "-p", f"127.0.0.1:{port}:8000", "pyweb:1")
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=2) as conn:
                    conn.sendall(b"GET / HTTP/1.0\r\n\r\n")
                    reply = b""
                    while chunk := conn.recv(65536):
                        reply += chunk
                if b"Hello from a Python container!" in reply:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the app never answered"
            time.sleep(0.2)
    finally:
        daemon.moor("rm", "-f", "pyweb", check=False)
        daemon.moor("rmi", "pyweb:1", check=False)
