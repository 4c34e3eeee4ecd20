"""``moor registry gc`` beside a running ``moor registry serve`` on the same root: it
deletes what no manifest refers to, keeps what one does and what an upload in progress
is writing, and the server goes on serving."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from registry_servers import OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, Registry, sha256, start_moorage


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Registry]:
    registry = start_moorage(tmp_path / "moor")
    try:
        yield registry
    finally:
        registry.stop()


def gc(registry: Registry, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "moorage.cli.main",
            "registry",
            "gc",
            "--root",
            str(registry.base / "root"),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def push(registry: Registry, name: str, data: bytes) -> str:
    reply = registry.call("POST", f"/v2/{name}/blobs/uploads/?digest={sha256(data)}", data)
    assert reply.status == 201
    return sha256(data)


def push_image(registry: Registry, name: str, tag: str, layer: bytes) -> bytes:
    config = json.dumps({"os": "linux", "tag": tag}).encode()
    push(registry, name, config)
    push(registry, name, layer)
    raw = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": sha256(config), "size": len(config)},
            "layers": [{"mediaType": OCI_LAYER, "digest": sha256(layer), "size": len(layer)}],
        }
    ).encode()
    reply = registry.call("PUT", f"/v2/{name}/manifests/{tag}", raw, {"Content-Type": OCI_MANIFEST})
    assert reply.status == 201
    return raw


def test_gc_deletes_what_no_manifest_refers_to(server: Registry) -> None:
    kept = push_image(server, "app", "kept", b"kept layer")
    dropped = push_image(server, "app", "dropped", b"dropped layer")
    assert server.call("DELETE", f"/v2/app/manifests/{sha256(dropped)}").status == 202

    dry = gc(server, "--grace", "0", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"would delete blob {sha256(b'dropped layer')}" in dry.stdout
    assert server.call("HEAD", f"/v2/app/blobs/{sha256(b'dropped layer')}").status == 200

    done = gc(server, "--grace", "0")
    assert done.returncode == 0, done.stderr
    assert "deleted 3 blobs" in done.stdout  # the manifest, its config and its layer
    assert server.call("HEAD", f"/v2/app/blobs/{sha256(b'dropped layer')}").status == 404
    assert server.call("GET", "/v2/app/manifests/kept").body == kept
    assert server.call("GET", f"/v2/app/blobs/{sha256(b'kept layer')}").body == b"kept layer"


def test_gc_keeps_recent_pushes_by_default(server: Registry) -> None:
    layer = push(server, "app", b"a layer whose manifest is still to come")
    done = gc(server)
    assert done.returncode == 0, done.stderr
    assert "deleted 0 blobs" in done.stdout
    assert server.call("HEAD", f"/v2/app/blobs/{layer}").status == 200


def test_gc_leaves_an_upload_in_progress_alone(server: Registry) -> None:
    data = b"first half|second half"
    started = server.call("POST", "/v2/app/blobs/uploads/")
    location = started.header("Location") or ""
    server.call("PATCH", location, data[:11], {"Content-Range": "0-10"})
    done = gc(server, "--grace", "0")
    assert done.returncode == 0, done.stderr
    assert "0 uploads" in done.stdout
    rest = server.call("PATCH", location, data[11:], {"Content-Range": f"11-{len(data) - 1}"})
    assert rest.status == 202
    assert server.call("PUT", f"{location}?digest={sha256(data)}").status == 201


def test_gc_of_a_directory_that_is_no_registry_is_refused(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "moorage.cli.main", "registry", "gc", "--root", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "no registry at" in result.stderr


def test_serve_refuses_contradictory_settings(tmp_path: Path) -> None:
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text("")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "moorage.cli.main",
            "registry",
            "serve",
            "--root",
            str(tmp_path / "root"),
            "--htpasswd",
            str(htpasswd),
            "--token-realm",
            "https://x",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "token authentication needs" in result.stderr
