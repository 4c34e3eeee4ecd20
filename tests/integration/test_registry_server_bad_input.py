"""``moor registry serve`` against hostile and broken clients: crafted names and paths,
bad digests, oversized manifests, uploads cut off half-way and a server killed mid-upload.
None of it may make a partial blob visible or touch anything outside the storage root.

Needs no root: the registry is an ordinary process on a 127.0.0.1 port.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from registry_servers import Registry, sha256, start_moorage

WAIT = 30.0


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Registry]:
    registry = start_moorage(tmp_path / "moor")
    try:
        yield registry
    finally:
        registry.stop()


def raw_request(registry: Registry, request: bytes) -> bytes:
    """Send bytes as they are (no client normalising the path) and read the reply."""
    address, port = registry.host.rsplit(":", 1)
    request = request.replace(b"Host: x\r\n", b"Host: x\r\nConnection: close\r\n", 1)
    with socket.create_connection((address, int(port)), timeout=WAIT) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def send_cut_off(registry: Registry, head: bytes, sent: bytes) -> None:
    """Send a request head and part of its body, then drop the connection."""
    address, port = registry.host.rsplit(":", 1)
    with socket.create_connection((address, int(port)), timeout=WAIT) as sock:
        sock.sendall(head + sent)
        # An RST, not a FIN: as a client that dies mid-transfer.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")


def status_of(reply: bytes) -> int:
    return int(reply.split(b" ", 2)[1])


def files_outside_the_root(top: Path, registry: Registry) -> list[str]:
    """Everything under ``top`` but the server's storage root, which is not walked (the
    server may be removing an ingest there meanwhile)."""
    root = registry.base / "root"
    found = []
    for directory, subdirs, files in os.walk(top):
        subdirs[:] = [d for d in subdirs if Path(directory, d) != root]
        found += [os.path.join(directory, name) for name in subdirs + files]
    return sorted(found)


def blobs_dir(registry: Registry) -> Path:
    return registry.base / "root" / "content" / "blobs" / "sha256"


def start_upload(registry: Registry, name: str = "app") -> str:
    reply = registry.call("POST", f"/v2/{name}/blobs/uploads/")
    assert reply.status == 202
    return reply.header("Location") or ""


# --------------------------------------------------------------------------- names, paths


@pytest.mark.parametrize(
    "path",
    [
        b"/v2/../../etc/passwd/manifests/latest",
        b"/v2/app/../../../tmp/manifests/latest",
        b"/v2/%2e%2e/%2e%2e/manifests/latest",
        b"/v2/app%2F..%2F..%2Fx/manifests/latest",
        b"/v2/app/%2e%2e/blobs/uploads/",
        b"/v2/./app/manifests/latest",
        b"/v2/" + b"a" * 256 + b"/manifests/latest",
        b"/v2/UPPER/manifests/latest",
        b"/v2/app\x00/manifests/latest",
    ],
)
def test_crafted_names_are_refused(server: Registry, path: bytes) -> None:
    reply = raw_request(server, b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status_of(reply) == 400
    if b"\x00" not in path:  # aiohttp refuses that one before the registry sees it
        assert b"NAME_INVALID" in reply


@pytest.mark.parametrize(
    "method_path",
    [
        b"PUT /v2/../x/manifests/v1",
        b"POST /v2/../../x/blobs/uploads/",
        b"PATCH /v2/app/blobs/uploads/../../../etc",
        b"PUT /v2/app/blobs/uploads/..%2F..%2Fetc?digest=sha256:" + b"0" * 64,
    ],
)
def test_writes_to_crafted_paths_leave_the_root_alone(
    server: Registry, tmp_path: Path, method_path: bytes
) -> None:
    before = files_outside_the_root(tmp_path, server)
    reply = raw_request(
        server, method_path + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
    )
    assert status_of(reply) in (400, 404)
    assert files_outside_the_root(tmp_path, server) == before
    assert not any(blobs_dir(server).iterdir())


@pytest.mark.parametrize(
    "path",
    [
        "/v2/app/blobs/sha256:XYZ",
        "/v2/app/blobs/sha256:" + "A" * 64,
        "/v2/app/blobs/md5:" + "a" * 32,
        "/v2/app/manifests/sha256:" + "0" * 63,
        "/v2/app/referrers/sha256:nothex",
    ],
)
def test_bad_digests_are_digest_invalid(server: Registry, path: str) -> None:
    reply = server.call("GET", path)
    assert reply.status == 400
    assert reply.error_codes() == ["DIGEST_INVALID"]


@pytest.mark.parametrize("tag", ["-leading-dash", "a" * 129, ".dot"])
def test_bad_tags_are_refused(server: Registry, tag: str) -> None:
    reply = server.call("PUT", f"/v2/app/manifests/{tag}", b"{}")
    assert reply.status == 400
    assert reply.error_codes() == ["TAG_INVALID"]


# --------------------------------------------------------------------------- sizes, digests


def test_a_chunked_manifest_over_4_mib_is_413(server: Registry) -> None:
    """Without a Content-Length the limit is enforced while reading."""
    body = b"x" * (4 * 1024 * 1024 + 1)
    chunked = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
    reply = raw_request(
        server,
        b"PUT /v2/app/manifests/big HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Type: application/vnd.oci.image.manifest.v1+json\r\n\r\n" + chunked,
    )
    assert status_of(reply) == 413


def test_a_digest_mismatch_shows_no_blob(server: Registry) -> None:
    location = start_upload(server)
    claimed = sha256(b"what the client claims")
    reply = server.call("PUT", f"{location}?digest={claimed}", b"what it sends")
    assert reply.status == 400
    assert reply.error_codes() == ["DIGEST_INVALID"]
    assert server.call("HEAD", f"/v2/app/blobs/{claimed}").status == 404
    assert list(blobs_dir(server).iterdir()) == []


# --------------------------------------------------------------------------- cut off


def test_a_patch_cut_off_half_way_can_be_resumed(server: Registry) -> None:
    data = os.urandom(2_000_000)
    location = start_upload(server)
    head = (
        f"PATCH {location} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(data)}\r\n"
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    send_cut_off(server, head, data[:700_000])
    # The status waits for the cut-off request to finish with the session.
    status = server.call("GET", location)
    assert status.status == 204
    received = int((status.header("Range") or "0-0").split("-")[1]) + 1
    assert 0 < received <= 700_000
    assert server.call("HEAD", f"/v2/app/blobs/{sha256(data)}").status == 404
    rest = server.call(
        "PATCH", location, data[received:], {"Content-Range": f"{received}-{len(data) - 1}"}
    )
    assert rest.status == 202
    assert server.call("PUT", f"{location}?digest={sha256(data)}").status == 201
    assert server.call("GET", f"/v2/app/blobs/{sha256(data)}").body == data


def test_a_monolithic_put_cut_off_makes_no_blob(server: Registry) -> None:
    data = os.urandom(1_000_000)
    location = start_upload(server)
    head = (
        f"PUT {location}?digest={sha256(data)} HTTP/1.1\r\nHost: x\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    ).encode()
    send_cut_off(server, head, data[:400_000])
    status = server.call("GET", location)
    assert status.status == 204  # the session lives on, partial
    assert server.call("HEAD", f"/v2/app/blobs/{sha256(data)}").status == 404
    assert list(blobs_dir(server).iterdir()) == []


def test_a_single_post_cut_off_leaves_nothing_behind(server: Registry) -> None:
    data = os.urandom(1_000_000)
    head = (
        f"POST /v2/app/blobs/uploads/?digest={sha256(data)} HTTP/1.1\r\nHost: x\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    ).encode()
    send_cut_off(server, head, data[:300_000])
    ingest = server.base / "root" / "content" / "ingest"
    deadline = time.monotonic() + WAIT
    while any(p.name != "lock" for p in ingest.iterdir()):
        assert time.monotonic() < deadline, list(ingest.iterdir())
        time.sleep(0.01)
    assert server.call("HEAD", f"/v2/app/blobs/{sha256(data)}").status == 404
    assert list(blobs_dir(server).iterdir()) == []


def test_a_server_killed_mid_upload_shows_no_blob_and_resumes(tmp_path: Path) -> None:
    data = os.urandom(3_000_000)
    root = tmp_path / "root"
    first = start_moorage(tmp_path / "first", root=root)
    try:
        location = start_upload(first)
        first.call("PATCH", location, data[:1_000_000], {"Content-Range": "0-999999"})
        assert first.proc is not None
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(WAIT)
    finally:
        first.stop()
    second = start_moorage(tmp_path / "second", root=root)
    try:
        assert second.call("HEAD", f"/v2/app/blobs/{sha256(data)}").status == 404
        assert second.call("GET", location).header("Range") == "0-999999"
        rest = second.call(
            "PATCH", location, data[1_000_000:], {"Content-Range": f"1000000-{len(data) - 1}"}
        )
        assert rest.status == 202
        assert second.call("PUT", f"{location}?digest={sha256(data)}").status == 201
        assert second.call("GET", f"/v2/app/blobs/{sha256(data)}").body == data
    finally:
        second.stop()


def test_read_only_server_refuses_pushes(tmp_path: Path) -> None:
    registry = start_moorage(tmp_path / "moor", read_only=True)
    try:
        reply = registry.call("POST", "/v2/app/blobs/uploads/")
        assert reply.status == 405
        assert reply.header("Allow") == "GET, HEAD"
        assert reply.error_codes() == ["UNSUPPORTED"]
        assert registry.call("GET", "/v2/").status == 200
    finally:
        registry.stop()
