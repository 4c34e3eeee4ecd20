"""Bad requests against a real daemon, over its raw socket: malformed JSON, wrong
types, unknown fields, huge headers and bodies, bad query parameters and names, API
versions out of range, endpoints Moorage does not serve, and clients that hang up in
the middle of a stream or a hijacked connection.

Each bad request gets a 4xx whose message names what was wrong (never a 500), and
afterwards the daemon answers, with its descriptors and threads back where they were.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import pytest

from daemon import Daemon, running_daemon
from raw_http import Answer, call, exchange, raw_request

pytestmark = pytest.mark.root

WAIT = 30.0  # seconds: the daemon settling after the clients left


def _exchange(daemon: Daemon, raw: bytes) -> Answer:
    return exchange(str(daemon.socket), raw)


def _call(daemon: Daemon, method: str, path: str, body: Any = None) -> Answer:
    return call(str(daemon.socket), method, path, body)


def _ok(answer: Answer) -> Any:
    assert answer.status < 300, (answer.status, answer.body)
    return json.loads(answer.body) if answer.body else None


def _leave(
    daemon: Daemon,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> int:
    """Start a request, read the answer's status line and headers, hang up; the status."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(WAIT)
        sock.connect(str(daemon.socket))
        sock.sendall(
            raw_request(method, path, body, {"Connection": "keep-alive", **(headers or {})})
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            assert chunk, f"{method} {path}: the daemon closed before its headers: {head!r}"
            head += chunk
    return int(head.split(b" ", 2)[1])


UPGRADE = {"Connection": "Upgrade", "Upgrade": "tcp"}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with running_daemon(tmp_path_factory.mktemp("bad-requests") / "moor", busybox=True) as d:
        yield d


@pytest.fixture(scope="module")
def quiet(daemon: Daemon) -> Iterator[str]:
    """A running container that prints nothing: a stream on it has nothing to send."""
    config = {"Image": "busybox", "Cmd": ["sleep", "3600"], "OpenStdin": True}
    cid = _ok(_call(daemon, "POST", "/containers/create?name=quiet", config))["Id"]
    try:
        assert _call(daemon, "POST", f"/containers/{cid}/start").status == 204
        yield cid
    finally:
        _call(daemon, "DELETE", f"/containers/{cid}?force=1")


def _exec(daemon: Daemon, cid: str, config: dict[str, Any]) -> str:
    exec_id = _ok(_call(daemon, "POST", f"/containers/{cid}/exec", config))["Id"]
    assert isinstance(exec_id, str)
    return exec_id


# --- malformed input: a 4xx that names it ---------------------------------------------

DEEP = b"[" * 100_000 + b"]" * 100_000

# (method, path ({c}: the quiet container, {e}: an exec of it), body, status, named)
BAD_INPUT: list[tuple[str, str, Any, int, str]] = [
    # not JSON, or not an object
    ("POST", "/containers/create", b"{bad", 400, "container create request"),
    ("POST", "/containers/create", b"[1, 2]", 400, "JSON object"),
    ("POST", "/containers/create", DEEP, 400, "not JSON"),
    ("POST", "/containers/create", b'{"Image": "\xff\xfe"}', 400, "not JSON"),
    ("POST", "/containers/{c}/exec", b"{bad", 400, "exec create request"),
    ("POST", "/exec/{e}/start", b"{bad", 400, "exec start request"),
    ("POST", "/networks/create", b"{bad", 400, "network create request"),
    ("POST", "/volumes/create", b"{bad", 400, "volume create request"),
    ("POST", "/build?buildargs={bad", b"", 400, "buildargs"),
    ("POST", "/build?labels=[1]", b"", 400, "labels"),
    ("POST", "/auth", b"{bad", 400, "auth"),
    # wrong types
    ("POST", "/containers/create", {"Image": "busybox", "Cmd": 5}, 400, "Cmd"),
    ("POST", "/containers/create", {"Image": "busybox", "Env": "x"}, 400, "Env"),
    ("POST", "/containers/create", {"Image": "busybox", "HostConfig": []}, 400, "HostConfig"),
    (
        "POST",
        "/containers/create",
        {"Image": "busybox", "HostConfig": {"Memory": "lots"}},
        400,
        "HostConfig.Memory",
    ),
    ("POST", "/containers/create", {"Image": "busybox", "Tty": "yes"}, 400, "Tty"),
    ("POST", "/containers/create", {"Image": 7}, 400, "Image"),
    ("POST", "/containers/{c}/exec", {"Cmd": 5}, 400, "Cmd"),
    ("POST", "/containers/{c}/exec", {"Cmd": ["true"], "Env": "x"}, 400, "Env"),
    ("POST", "/networks/create", {"Name": 5}, 400, "Name"),
    ("POST", "/volumes/create", {"Labels": "x"}, 400, "Labels"),
    # bad query parameters
    ("GET", "/containers/json?all=maybe", None, 400, "all"),
    ("GET", "/containers/json?limit=abc", None, 400, "limit"),
    ("GET", "/containers/json?filters={bad", None, 400, "filters"),
    ("GET", "/containers/{c}/logs?stdout=1&tail=-x", None, 400, "tail"),
    ("GET", "/containers/{c}/logs?stdout=1&follow=perhaps", None, 400, "follow"),
    ("POST", "/containers/{c}/stop?t=abc", None, 400, "abc"),
    ("POST", "/containers/{c}/restart?t=abc", None, 400, "abc"),
    ("POST", "/containers/{c}/kill?signal=NOPE", None, 400, "NOPE"),
    ("POST", "/containers/{c}/wait?condition=bogus", None, 400, "bogus"),
    ("POST", "/containers/{c}/resize?h=abc&w=1", None, 400, "abc"),
    ("GET", "/containers/{c}/stats?stream=0&one-shot=maybe", None, 400, "one-shot"),
    ("GET", "/events?since=notatime", None, 400, "notatime"),
    ("GET", "/system/df?type=bogus", None, 400, "bogus"),
    # bad names
    ("POST", "/containers/create?name=bad/name", {"Image": "busybox"}, 400, "bad/name"),
    ("POST", "/containers/{c}/rename?name=bad/name", None, 400, "bad/name"),
    ("GET", "/containers/no-such-container/json", None, 404, "no-such-container"),
    ("POST", "/containers/create", {"Image": "no-such-image:x"}, 404, "no-such-image:x"),
    ("GET", "/images/UPPER/json", None, 404, "UPPER"),
    ("POST", "/images/create?fromImage=UPPER", None, 400, "UPPER"),
    ("POST", "/volumes/create", {"Name": "bad/name"}, 400, "bad/name"),
    ("POST", "/networks/create", {"Name": "bad name!"}, 400, "bad name!"),
    # API versions out of range, paths that are no endpoint
    ("GET", "/v1.40/_ping", None, 400, "client version 1.40 is too old"),
    ("GET", "/v1/containers/json", None, 400, "client version 1 is too old"),
    ("GET", "/v1.51/info", None, 400, "client version 1.51 is too new"),
    ("GET", "/no/such/path", None, 404, "page not found"),
    ("GET", "/v1.41/no/such/path", None, 404, "page not found"),
    ("DELETE", "/_ping", None, 404, "page not found"),
    # what Moorage does not serve
    ("GET", "/nodes", None, 501, "Moorage does not support swarm mode"),
    ("POST", "/swarm/init", {}, 501, "Moorage does not support swarm mode"),
    ("GET", "/v1.50/services", None, 501, "Moorage does not support swarm mode"),
    ("GET", "/tasks", None, 501, "swarm mode"),
    ("DELETE", "/secrets/x", None, 501, "swarm mode"),
    ("GET", "/configs", None, 501, "swarm mode"),
    ("GET", "/plugins", None, 501, "Moorage does not support plugins"),
    ("GET", "/distribution/busybox/json", None, 501, "Moorage does not support"),
    ("POST", "/session", None, 501, "BuildKit"),
    ("POST", "/grpc", None, 501, "BuildKit"),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "named"),
    BAD_INPUT,
    ids=[f"{m} {p} {str(b)[:30]}" for m, p, b, _, _ in BAD_INPUT],
)
def test_bad_input_gets_a_4xx_that_names_it(
    daemon: Daemon, quiet: str, method: str, path: str, body: Any, status: int, named: str
) -> None:
    exec_id = _exec(daemon, quiet, {"Cmd": ["true"]}) if "{e}" in path else ""
    answer = _call(daemon, method, path.replace("{c}", quiet).replace("{e}", exec_id), body)

    assert (answer.status, named) == (status, named), answer.body
    assert named in answer.message()
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.headers["Api-Version"] == "1.50"


def test_unknown_fields_are_ignored_as_dockerd_does(daemon: Daemon) -> None:
    body = {"Image": "busybox", "Cmd": ["true"], "Bogus": 1, "HostConfig": {"AlsoBogus": True}}

    created = _ok(_call(daemon, "POST", "/containers/create", body))
    _call(daemon, "DELETE", f"/containers/{created['Id']}")

    assert created["Warnings"] == []


def test_keys_in_another_case_are_read_as_dockerd_reads_them(daemon: Daemon) -> None:
    body = {"image": "busybox", "cmd": ["true"], "hostconfig": {"memory": "lots"}}

    answer = _call(daemon, "POST", "/containers/create", body)

    assert answer.status == 400
    assert "HostConfig.Memory" in answer.message()


def test_a_body_over_the_limit_is_a_413(daemon: Daemon) -> None:
    size = 65 * 1024 * 1024  # the daemon takes 64 MiB
    head = raw_request("POST", "/containers/create", None)[:-2]
    head += f"Content-Type: application/json\r\nContent-Length: {size}\r\n\r\n".encode()

    answer = _exchange(daemon, head + b" " * size)

    assert answer.status == 413
    assert "request body size" in answer.message()


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        (raw_request("GET", "/_ping", headers={"X-Huge": "a" * (3 * 1024 * 1024)}), "Header"),
        (raw_request("GET", "/_ping?" + "a" * 100_000), "Status line is too long"),
        (
            b"POST /containers/create HTTP/1.1\r\nHost: m\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"zz\r\n{}\r\n0\r\n\r\n",
            "chunk size",
        ),
        (b"POST /containers/create HTTP/1.1\r\nContent-Length: abc\r\n\r\n", "Content-Length"),
        (b"\x00\x01\x02 not http\r\n\r\n", "method"),
    ],
    ids=["huge-header", "huge-request-line", "bad-chunk", "bad-length", "not-http"],
)
def test_unparseable_http_gets_a_400(daemon: Daemon, raw: bytes, named: str) -> None:
    # Refused by the HTTP parser before any route: aiohttp's plain-text 400, as dockerd's
    # Go server answers such requests in plain text.
    answer = _exchange(daemon, raw)

    assert answer.status == 400
    assert named in answer.body.decode()


# --- clients that hang up ----------------------------------------------------------------


class Resources(NamedTuple):
    fds: int  # the daemon's open descriptors
    tasks: int  # its asyncio tasks (one of them serves the count)
    jobs: int  # its threads but the idle pool of engine workers, which only grows


def _resources(daemon: Daemon) -> Resources:
    assert daemon.proc is not None
    fds = len(os.listdir(f"/proc/{daemon.proc.pid}/fd"))
    state = _ok(_call(daemon, "GET", "/debug/vars"))
    threads = dict(state["threads"])
    threads.pop("engine", None)
    return Resources(fds, state["tasks"], sum(threads.values()))


def _ping(daemon: Daemon) -> None:
    answer = _call(daemon, "GET", "/_ping")
    assert (answer.status, answer.body) == (200, b"OK")


def _eventually(daemon: Daemon, condition: Callable[[], bool], what: str) -> None:
    """Wait for ``condition``, paced by round trips to the daemon (each one also shows
    that it still answers), until ``WAIT`` has passed."""
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"still not {what} after {WAIT}s: {_resources(daemon)}"
        _ping(daemon)


def _hang_up_everywhere(daemon: Daemon, cid: str) -> None:
    """Every kind of stream a client can walk away from, on a container that prints
    nothing (so that only the hang-up can end them)."""
    statuses = [
        _leave(daemon, "GET", f"/containers/{cid}/logs?follow=1&stdout=1&stderr=1"),
        _leave(daemon, "GET", "/events"),
        _leave(daemon, "GET", f"/containers/{cid}/stats"),
        _leave(daemon, "POST", f"/containers/{cid}/wait"),
        _leave(
            daemon, "POST", f"/containers/{cid}/attach?stream=1&stdout=1&stderr=1", b"", UPGRADE
        ),
        _leave(
            daemon,
            "POST",
            f"/containers/{cid}/attach?stream=1&stdin=1&stdout=1&stderr=1",
            b"",
            UPGRADE,
        ),
    ]
    # An exec that ends when its input does, one that ends when its output breaks...
    execs = [
        _exec(daemon, cid, {"Cmd": ["cat"], "AttachStdin": True, "AttachStdout": True}),
        _exec(daemon, cid, {"Cmd": ["yes"], "AttachStdout": True, "AttachStderr": True}),
    ]
    start = json.dumps({"Detach": False}).encode()
    statuses += [_leave(daemon, "POST", f"/exec/{e}/start", start, UPGRADE) for e in execs]
    # ...and one on a terminal, which runs on as dockerd's does: ended here.
    tty = _exec(
        daemon, cid, {"Cmd": ["sh"], "Tty": True, "AttachStdin": True, "AttachStdout": True}
    )
    statuses.append(_leave(daemon, "POST", f"/exec/{tty}/start", start, UPGRADE))
    pid = _ok(_call(daemon, "GET", f"/exec/{tty}/json"))["Pid"]
    os.kill(pid, signal.SIGKILL)
    _eventually(
        daemon, lambda: not _ok(_call(daemon, "GET", f"/exec/{tty}/json"))["Running"], "ended"
    )
    # Request bodies cut short: JSON, an image archive, a build context.
    for path in ("/containers/create", "/images/load", "/build?t=cut"):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(str(daemon.socket))
            head = f"POST {path} HTTP/1.1\r\nHost: m\r\nContent-Length: 100000\r\n\r\n"
            sock.sendall(head.encode() + b"{" * 1000)
    assert statuses == [200, 200, 200, 200, 101, 101, 101, 101, 101]


def _settled(daemon: Daemon, baseline: Resources) -> bool:
    now = _resources(daemon)
    return all(n <= b for n, b in zip(now, baseline, strict=True))


def test_clients_that_hang_up_mid_stream_leave_nothing_behind(daemon: Daemon, quiet: str) -> None:
    before = _resources(daemon)
    _hang_up_everywhere(daemon, quiet)  # what opens once and stays (a database, say)
    _eventually(daemon, lambda: _settled(daemon, before._replace(fds=10**6)), "settled")
    warm = _resources(daemon)

    for _ in range(3):
        _hang_up_everywhere(daemon, quiet)

    _eventually(daemon, lambda: _settled(daemon, warm), f"back to {warm}")


def test_the_daemon_answers_after_it_all_and_logged_no_handler_failure(daemon: Daemon) -> None:
    _ping(daemon)

    failures = [
        line
        for line in daemon.log.read_text().splitlines()
        if "moorage.api" in line and "ERROR" in line
    ]

    assert failures == []
