"""The guide's local development example, made runnable (issue 9): a web service built
from the project directory with the source bind-mounted and a port published, and a
PostgreSQL database (an image bootstrapped here from Debian's postgresql package)
with a named volume and its password from the environment.

``up -d --wait`` brings both up healthy; web reaches the database by the name ``db``;
the data survives ``down`` and ``up``; ``down -v`` removes it."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from compose_commands import run_compose
from daemon import Daemon, running_daemon

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(shutil.which("mmdebstrap") is None, reason="mmdebstrap is not installed"),
]

DOCKERFILE = """\
FROM debian-pg:bookworm
WORKDIR /app
COPY app.py .
EXPOSE 8000
CMD ["python3", "app.py"]
"""

# The web app answers / with the notes it reads from the database at host "db".
APP = """\
import os
import subprocess
from http.server import BaseHTTPRequestHandler, HTTPServer


class App(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/health":
            return self.reply(200, b"ok\\n")
        query = subprocess.run(
            ["psql", "-h", "db", "-U", "postgres", "-tAc", "SELECT note FROM notes"],
            capture_output=True,
            env={**os.environ, "PGPASSWORD": os.environ["DB_PASSWORD"]},
        )
        if query.returncode:
            return self.reply(503, query.stderr)
        self.reply(200, query.stdout)

    def reply(self, status, body):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


HTTPServer(("0.0.0.0", 8000), App).serve_forever()
"""

# Initialises the cluster in the (empty) named volume on the first start, with the
# password from the environment, then runs postgres as the postgres user.
DB_START = """\
set -e
PGDATA=/var/lib/postgresql/data
BIN=$(echo /usr/lib/postgresql/*/bin)
mkdir -p "$PGDATA"
chown postgres:postgres "$PGDATA"
chmod 700 "$PGDATA"
as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    printf '%s\\n' "$POSTGRES_PASSWORD" > /tmp/pwfile
    chown postgres /tmp/pwfile
    as_postgres "$BIN/initdb" -D "$PGDATA" -U postgres --pwfile=/tmp/pwfile \\
        --auth-host=scram-sha-256 --auth-local=trust > /dev/null
    rm /tmp/pwfile
    echo "host all all 0.0.0.0/0 scram-sha-256" >> "$PGDATA/pg_hba.conf"
fi
exec setpriv --reuid=postgres --regid=postgres --init-groups "$BIN/postgres" -D "$PGDATA" \\
    -c listen_addresses='*' -c unix_socket_directories=/tmp
"""

COMPOSE = """\
services:
  web:
    build: .
    ports:
      - "127.0.0.1:{port}:8000"
    volumes:
      - .:/app
    environment:
      - DB_PASSWORD=${{DB_PASSWORD:?set DB_PASSWORD}}
    depends_on:
      db:
        condition: service_healthy
    healthcheck:
      test: ["CMD", "python3", "-c",
             "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health')"]
      interval: 1s
      retries: 60
  db:
    image: debian-pg:bookworm
    command: ["sh", "/init/start.sh"]
    environment:
      POSTGRES_PASSWORD: ${{DB_PASSWORD:?set DB_PASSWORD}}
    volumes:
      - pgdata:/var/lib/postgresql/data
      - ./db:/init:ro
    healthcheck:
      test: ["CMD", "pg_isready", "-h", "127.0.0.1", "-U", "postgres"]
      interval: 1s
      retries: 120
volumes:
  pgdata:
"""


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with running_daemon(tmp_path_factory.mktemp("compose-guide") / "moor") as d:
        d.moor(
            "bootstrap", "debian:bookworm", "--include", "postgresql,python3",
            "-t", "debian-pg:bookworm",
        )  # fmt: skip
        yield d


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(port: int) -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


class Guide:
    def __init__(self, daemon: Daemon, directory: Path) -> None:
        self.daemon = daemon
        self.directory = directory
        self.name = f"guide{uuid.uuid4().hex[:6]}"

    def compose(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "DB_PASSWORD": "s3cret-from-env", "COMPOSE_PROJECT_NAME": self.name}
        argv = [sys.executable, "-m", "moorage.cli.main", "-H", self.daemon.host, "compose", *args]
        shown = f"moor compose {' '.join(args)}"
        return run_compose(argv, cwd=self.directory, env=env, shown=shown, check=check, timeout=600)

    def health(self, service: str) -> str:
        from moorage.api.client import Client

        info = Client(str(self.daemon.socket)).get_json(f"/containers/{self.name}-{service}-1/json")
        return str(info["State"]["Health"]["Status"])


@pytest.fixture
def guide(daemon: Daemon, tmp_path: Path) -> Iterator[tuple[Guide, int]]:
    port = _free_port()
    directory = tmp_path / "app"
    (directory / "db").mkdir(parents=True)
    (directory / "Dockerfile").write_text(DOCKERFILE)
    (directory / "app.py").write_text(APP)
    (directory / "db" / "start.sh").write_text(DB_START)
    (directory / "compose.yaml").write_text(COMPOSE.format(port=port))
    g = Guide(daemon, directory)
    try:
        yield g, port
    finally:
        g.compose("down", "-v", "--rmi", "local", "-t", "5", check=False)


def test_the_guides_web_and_database(guide: tuple[Guide, int]) -> None:
    g, port = guide
    g.compose("up", "-d", "--wait")
    assert (g.health("web"), g.health("db")) == ("healthy", "healthy")

    # web reached db by its name and signed in with the password from the environment
    status, body = _get(port)
    assert status == 503
    assert b'relation "notes" does not exist' in body

    g.compose(
        "exec", "-T", "db", "psql", "-h", "/tmp", "-U", "postgres", "-c",
        "CREATE TABLE notes (note text); INSERT INTO notes VALUES ('survives down and up')",
    )  # fmt: skip
    assert _get(port) == (200, b"survives down and up\n")

    # the source is bind-mounted: a file written in the project directory is there
    (g.directory / "edited.txt").write_text("live edit\n")
    assert g.compose("exec", "-T", "web", "cat", "/app/edited.txt").stdout == "live edit\n"

    g.compose("down")
    g.compose("up", "-d", "--wait")
    assert _get(port) == (200, b"survives down and up\n")

    g.compose("down", "-v")
    g.compose("up", "-d", "--wait")
    status, body = _get(port)
    assert status == 503
    assert b'relation "notes" does not exist' in body
