"""Volumes through `moor volume` and the daemon's API: create, ls, inspect, rm, prune,
filters, and the errors (exit codes, messages naming the input, HTTP statuses)."""

from __future__ import annotations

import asyncio
import http.client
import json
import shutil
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from daemon import Daemon, running_daemon
from moorage.api.client import Client
from moorage.api.docker.server import build_app
from moorage.engine.config import EngineConfig
from moorage.engine.engine import Engine
from moorage.errors import Conflict, InvalidArgument, NotFound, NotSupported
from netclean import new_test_bridge, remove_daemon_networks

pytestmark = pytest.mark.root

# `moor` with the volume commands registered, whether or not cli/main.py registers them
# yet (registering twice is harmless: the second group replaces the first).
_MOOR = "from moorage.cli import main, volumes; volumes.register(main.cli); main.main()"


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    with running_daemon(tmp_path / "moor") as d:
        yield d


def moor(
    d: Daemon, *args: str, input: bytes | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-c", _MOOR, "-H", d.host, *args],
        input=input.decode() if input is not None else None,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"moor {' '.join(args)} failed ({result.returncode}): {result.stderr}")
    return result


def names(d: Daemon, *filters: str) -> list[str]:
    args = [a for f in filters for a in ("-f", f)]
    return moor(d, "volume", "ls", "-q", *args).stdout.split()


def inspect(d: Daemon, name: str) -> dict[str, Any]:
    data = json.loads(moor(d, "volume", "inspect", name).stdout)
    assert isinstance(data, list)
    assert len(data) == 1
    return data[0]  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- CLI


def test_create_ls_inspect_rm(daemon: Daemon) -> None:
    out = moor(daemon, "volume", "create", "--label", "app=web", "--label", "tier", "data")
    assert out.stdout == "data\n"
    assert moor(daemon, "volume", "create", "--name", "other").stdout == "other\n"
    anonymous = moor(daemon, "volume", "create").stdout.strip()
    assert len(anonymous) == 64
    int(anonymous, 16)

    table = moor(daemon, "volume", "ls").stdout.splitlines()
    assert table[0].split() == ["DRIVER", "VOLUME", "NAME"]
    assert [line.split() for line in table[1:]] == [
        ["local", name] for name in sorted([anonymous, "data", "other"])
    ]
    assert names(daemon) == sorted([anonymous, "data", "other"])

    info = inspect(daemon, "data")
    assert info["Name"] == "data"
    assert info["Driver"] == "local"
    assert info["Scope"] == "local"
    assert info["Labels"] == {"app": "web", "tier": ""}
    assert info["Options"] is None
    assert info["CreatedAt"].endswith("Z")
    mountpoint = Path(info["Mountpoint"])
    assert mountpoint == daemon.root / "volumes" / "data" / "_data"
    assert mountpoint.is_dir()
    assert inspect(daemon, anonymous)["Labels"] == {"com.docker.volume.anonymous": ""}

    templated = moor(daemon, "volume", "inspect", "--format", "{{.Name}}:{{.Driver}}", "data")
    assert templated.stdout == "data:local\n"
    line = moor(daemon, "volume", "ls", "--format", "{{.Name}}|{{.Labels}}", "-f", "name=^data$")
    assert line.stdout == "data|app=web,tier=\n"
    as_json = moor(daemon, "volume", "ls", "--format", "json", "-f", "name=other").stdout
    assert json.loads(as_json)["Name"] == "other"

    # An existing name is returned unchanged, as docker does.
    assert moor(daemon, "volume", "create", "--label", "new=1", "data").stdout == "data\n"
    assert inspect(daemon, "data")["Labels"] == {"app": "web", "tier": ""}

    removed = moor(daemon, "volume", "rm", "data", "other", anonymous)
    assert removed.stdout.split() == ["data", "other", anonymous]
    assert names(daemon) == []
    assert not mountpoint.exists()


def test_driver_options(daemon: Daemon) -> None:
    opts = ["-o", "type=tmpfs", "-o", "device=tmpfs", "-o", "o=size=1m"]
    moor(daemon, "volume", "create", *opts, "scratch")
    assert inspect(daemon, "scratch")["Options"] == {
        "type": "tmpfs",
        "device": "tmpfs",
        "o": "size=1m",
    }
    bad = moor(daemon, "volume", "create", "-o", "bogus=1", "xx", check=False)
    assert bad.returncode == 1
    assert 'invalid option: "bogus"' in bad.stderr
    bad = moor(daemon, "volume", "create", "-o", "type", "xx", check=False)
    assert bad.returncode == 1
    assert "invalid driver option: 'type' (want key=value)" in bad.stderr
    bad = moor(daemon, "volume", "create", "-d", "nfs", "xx", check=False)
    assert bad.returncode == 1
    assert "volume driver not supported: nfs" in bad.stderr
    assert names(daemon) == ["scratch"]


def test_filters(daemon: Daemon) -> None:
    moor(daemon, "volume", "create", "--label", "env=prod", "--label", "team=a", "db-prod")
    moor(daemon, "volume", "create", "--label", "env=dev", "db-dev")
    moor(daemon, "volume", "create", "cache")
    assert names(daemon, "name=db") == ["db-dev", "db-prod"]
    assert names(daemon, "name=^cache$") == ["cache"]
    assert names(daemon, "label=env") == ["db-dev", "db-prod"]
    assert names(daemon, "label=env=prod") == ["db-prod"]
    assert names(daemon, "label=env=prod", "label=team=b") == []  # labels are ANDed
    assert names(daemon, "driver=local") == ["cache", "db-dev", "db-prod"]
    assert names(daemon, "driver=other") == []
    # No container uses any of them yet: all are dangling.
    assert names(daemon, "dangling=true") == ["cache", "db-dev", "db-prod"]
    assert names(daemon, "dangling=false") == []

    bad = moor(daemon, "volume", "ls", "-f", "color=red", check=False)
    assert bad.returncode == 1
    assert "invalid filter 'color'" in bad.stderr
    bad = moor(daemon, "volume", "ls", "-f", "dangling=maybe", check=False)
    assert bad.returncode == 1
    assert "invalid filter 'dangling=maybe'" in bad.stderr
    bad = moor(daemon, "volume", "ls", "-f", "dangling", check=False)
    assert bad.returncode == 1
    assert "bad format of filter: 'dangling'" in bad.stderr


def test_prune(daemon: Daemon) -> None:
    anon = moor(daemon, "volume", "create").stdout.strip()
    moor(daemon, "volume", "create", "--label", "keep=yes", "kept")
    moor(daemon, "volume", "create", "named")
    (Path(inspect(daemon, anon)["Mountpoint"]) / "blob").write_bytes(b"x" * 5000)

    refused = moor(daemon, "volume", "prune", input=b"n\n", check=False)
    assert refused.returncode != 0
    assert "This will remove anonymous local volumes" in refused.stdout
    assert len(names(daemon)) == 3

    pruned = moor(daemon, "volume", "prune", input=b"y\n")
    assert pruned.stdout.endswith(f"Deleted Volumes:\n{anon}\n\nTotal reclaimed space: 5kB\n")
    assert names(daemon) == ["kept", "named"]

    # Only anonymous volumes without -a: nothing left to prune.
    assert moor(daemon, "volume", "prune", "-f").stdout == "Total reclaimed space: 0B\n"
    # -a with a label filter: every unused volume but the kept one.
    out = moor(daemon, "volume", "prune", "-f", "-a", "--filter", "label!=keep=yes").stdout
    assert out.splitlines()[:2] == ["Deleted Volumes:", "named"]
    assert names(daemon) == ["kept"]
    moor(daemon, "volume", "prune", "-f", "-a", "--filter", "label=keep")
    assert names(daemon) == []


def test_errors_name_the_input(daemon: Daemon) -> None:
    bad = moor(daemon, "volume", "create", "bad name!", check=False)
    assert bad.returncode == 1
    assert 'invalid volume name: "bad name!"' in bad.stderr
    bad = moor(daemon, "volume", "create", "--name", "a", "b", check=False)
    assert bad.returncode == 1
    assert "either specify --name or provide positional arg" in bad.stderr

    moor(daemon, "volume", "create", "present")
    missing = moor(daemon, "volume", "inspect", "present", "nosuch", check=False)
    assert missing.returncode == 1
    assert [v["Name"] for v in json.loads(missing.stdout)] == ["present"]
    assert "no such volume: nosuch" in missing.stderr
    missing = moor(daemon, "volume", "inspect", "a/b", check=False)
    assert missing.returncode == 1
    assert json.loads(missing.stdout) == []
    assert "no such volume: a/b" in missing.stderr

    # rm goes on past a missing name, then fails; -f makes a missing name no error.
    moor(daemon, "volume", "create", "second")
    result = moor(daemon, "volume", "rm", "nosuch", "present", check=False)
    assert result.returncode == 1
    assert result.stdout == "present\n"
    assert "Error response from daemon: no such volume: nosuch" in result.stderr
    assert moor(daemon, "volume", "rm", "-f", "nosuch", "second").stdout.split() == [
        "nosuch",
        "second",
    ]
    assert names(daemon) == []

    gone = subprocess.run(
        [sys.executable, "-c", _MOOR, "-H", "unix:///run/moorage-nosuch/moor.sock", "volume", "ls"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert gone.returncode == 1
    assert "cannot connect to the moor daemon at unix:///run/moorage-nosuch/moor.sock" in (
        gone.stderr
    )


@pytest.mark.skipif(shutil.which("docker") is None, reason="the docker CLI is not installed")
def test_the_docker_cli_manages_moorage_volumes(daemon: Daemon) -> None:
    def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["docker", "-H", daemon.host, "volume", *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert not check or result.returncode == 0, result.stderr
        return result

    assert docker("create", "--label", "a=b", "dvol").stdout == "dvol\n"
    assert docker("ls", "-q").stdout == "dvol\n"
    info = json.loads(docker("inspect", "dvol").stdout)[0]
    assert info["Labels"] == {"a": "b"}
    assert docker("ls", "-q", "-f", "label=a=c").stdout == ""
    missing = docker("rm", "nosuch", check=False)
    assert missing.returncode == 1
    assert "no such volume: nosuch" in missing.stderr
    assert docker("rm", "dvol").stdout == "dvol\n"
    anon = docker("create").stdout.strip()
    assert anon in docker("prune", "-f").stdout
    assert docker("ls", "-q").stdout == ""


# --------------------------------------------------------------------------- API


def _raw(sock: str, method: str, path: str, body: bytes | None = None) -> tuple[int, Any]:
    """One request with the path as given (any API version prefix), no client mapping."""
    conn = http.client.HTTPConnection("localhost", timeout=30)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sock)
    conn.sock = s
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
        return response.status, json.loads(data) if data else None
    finally:
        conn.close()


def test_api_statuses(daemon: Daemon) -> None:
    c = Client(str(daemon.socket))
    created = c.request("POST", "/volumes/create", json_body={"Name": "v1", "Labels": {"a": "b"}})
    assert created.status == 201
    volume = created.json()
    assert (volume["Name"], volume["Driver"], volume["Labels"]) == ("v1", "local", {"a": "b"})
    again = c.request("POST", "/volumes/create", json_body={"Name": "v1"})
    assert again.status == 201
    assert again.json()["CreatedAt"] == volume["CreatedAt"]

    # An empty body, as an old client may send: an anonymous volume.
    anon = c.request("POST", "/volumes/create", body=b"").json()
    assert anon["Labels"] == {"com.docker.volume.anonymous": ""}

    got = c.request("GET", "/volumes/v1")
    assert got.status == 200
    assert got.json() == volume
    listed = c.get_json("/volumes", filters={"label": ["a=b"]})
    assert listed == {"Volumes": [volume], "Warnings": []}
    assert c.get_json("/volumes", filters={"name": {"v1": True}})["Volumes"] == [volume]

    with pytest.raises(NotFound, match="no such volume: nosuch"):
        c.request("GET", "/volumes/nosuch")
    with pytest.raises(NotFound, match="no such volume: nosuch"):
        c.request("DELETE", "/volumes/nosuch")
    forced = c.request("DELETE", "/volumes/nosuch", params={"force": True})
    assert (forced.status, forced.read()) == (204, b"")
    deleted = c.request("DELETE", "/volumes/v1")
    assert deleted.status == 204
    assert deleted.read() == b""

    pruned = c.request("POST", "/volumes/prune")
    assert pruned.status == 200
    assert pruned.json() == {"VolumesDeleted": [anon["Name"]], "SpaceReclaimed": 0}
    assert c.get_json("/volumes")["Volumes"] == []


def test_api_rejects_bad_input(daemon: Daemon) -> None:
    c = Client(str(daemon.socket))
    cases: list[tuple[bytes, str]] = [
        (b"{not json", "body is not JSON"),
        (b"[1, 2]", "want a JSON object"),
        (b'{"Name": 5}', "Name must be a string, not 5"),
        (b'{"Name": "x", "Labels": ["a"]}', 'Labels must be an object of strings, not ["a"]'),
        (b'{"Name": "x", "DriverOpts": {"type": 1}}', "DriverOpts must be an object of strings"),
        (b'{"Name": "bad/name"}', 'invalid volume name: "bad/name"'),
        (b'{"Name": "-x"}', 'invalid volume name: "-x"'),
        (b'{"Name": "metadata.db"}', 'invalid volume name: "metadata.db"'),
    ]
    for body, message in cases:
        with pytest.raises(InvalidArgument) as info:
            c.request(
                "POST", "/volumes/create", body=body, headers={"Content-Type": "application/json"}
            )
        assert message in str(info.value), body
        assert _raw(str(daemon.socket), "POST", "/v1.47/volumes/create", body)[0] == 400
    with pytest.raises(NotSupported, match="volume driver not supported: nfs"):
        c.request("POST", "/volumes/create", json_body={"Name": "x", "Driver": "nfs"})

    for filters, message in [
        ("{bad", "invalid filters: {bad: not JSON"),
        ('["name"]', "want a JSON object"),
        ('{"name": 5}', "the values of 'name' must be a list of strings"),
        ('{"color": ["red"]}', "invalid filter 'color'"),
        ('{"dangling": ["maybe"]}', "invalid filter 'dangling=maybe'"),
    ]:
        with pytest.raises(InvalidArgument) as info:
            c.request("GET", "/volumes", params={"filters": filters})
        assert message in str(info.value)
    with pytest.raises(InvalidArgument, match="invalid filter 'name'"):
        c.request("POST", "/volumes/prune", params={"filters": '{"name": ["x"]}'})
    assert c.get_json("/volumes")["Volumes"] == []


def test_api_version_decides_what_prune_removes(daemon: Daemon) -> None:
    sock = str(daemon.socket)
    for name in ("named1", "named2"):
        assert (
            _raw(sock, "POST", "/v1.47/volumes/create", json.dumps({"Name": name}).encode())[0]
            == 201
        )
    # From API 1.42, prune removes anonymous volumes only, unless all=true ...
    status, body = _raw(sock, "POST", "/v1.47/volumes/prune")
    assert (status, body["VolumesDeleted"]) == (200, [])
    status, body = _raw(sock, "POST", '/v1.47/volumes/prune?filters={"all":["false"]}')
    assert (status, body["VolumesDeleted"]) == (200, [])
    status, body = _raw(sock, "POST", '/v1.47/volumes/prune?filters={"all":["true"]}')
    assert (status, body["VolumesDeleted"]) == (200, ["named1", "named2"])
    # ... before it, every unused volume, as dockerd does for old clients.
    _raw(sock, "POST", "/v1.47/volumes/create", b'{"Name": "named3"}')
    status, body = _raw(sock, "POST", "/v1.41/volumes/prune")
    assert status == 200
    assert "named3" in body["VolumesDeleted"]
    assert _raw(sock, "GET", "/volumes")[1]["Volumes"] == []


# --------------------------------------------------------------------------- in use


@pytest.fixture
def in_process(tmp_path: Path) -> Iterator[tuple[Engine, Client]]:
    """The API served from this process, so that a test decides which volumes are in use."""
    run = Path(f"/run/moorage-test-{uuid.uuid4().hex[:8]}")
    bridge = new_test_bridge()
    config = EngineConfig(
        root=str(tmp_path / "root"),
        exec_root=str(run),
        host=f"unix://{run}/api.sock",
        bridge=bridge,
    )
    run.mkdir(mode=0o700)
    engine = Engine(config)
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(build_app(engine), access_log=None)
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.UnixSite(runner, config.socket_path).start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield engine, Client(config.socket_path, timeout=30)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        loop.run_until_complete(runner.cleanup())
        loop.close()
        engine.close()
        remove_daemon_networks(tmp_path / "root", bridge)
        shutil.rmtree(run, ignore_errors=True)


def test_a_volume_in_use_is_a_conflict_naming_its_containers(
    in_process: tuple[Engine, Client],
) -> None:
    engine, c = in_process
    users = {"busy": ["c0ffee", "beef00"]}
    engine.volume_users = lambda name: users.get(name, [])  # type: ignore[method-assign]
    for name in ("busy", "idle"):
        c.request("POST", "/volumes/create", json_body={"Name": name}).read()
    for force in (False, True):  # force does not remove a volume in use (as dockerd)
        with pytest.raises(Conflict) as info:
            c.request("DELETE", "/volumes/busy", params={"force": force})
        assert str(info.value) == "remove busy: volume is in use - [c0ffee beef00]"
    names_of = [
        v["Name"] for v in c.get_json("/volumes", filters={"dangling": ["false"]})["Volumes"]
    ]
    assert names_of == ["busy"]
    dangling = c.get_json("/volumes", filters={"dangling": ["true"]})["Volumes"]
    assert [v["Name"] for v in dangling] == ["idle"]
    pruned = c.request("POST", "/volumes/prune", params={"filters": {"all": ["true"]}}).json()
    assert pruned["VolumesDeleted"] == ["idle"]
    assert [v["Name"] for v in c.get_json("/volumes")["Volumes"]] == ["busy"]
    users.clear()
    deleted = c.request("DELETE", "/volumes/busy")
    assert (deleted.status, deleted.read()) == (204, b"")


def test_a_tmpfs_volume_is_mounted_while_containers_use_it(daemon: Daemon) -> None:
    moor(daemon, "bootstrap", "busybox")
    moor(daemon, "volume", "create", "-o", "type=tmpfs", "-o", "device=tmpfs",
         "-o", "o=size=1m", "ramdisk")  # fmt: skip
    try:
        run = moor(daemon, "run", "-d", "--name", "ram-user", "-v", "ramdisk:/data", "busybox",
                   "sh", "-c", "echo kept > /data/f && exec sleep 300")  # fmt: skip
        assert run.returncode == 0
        data = inspect(daemon, "ramdisk")["Mountpoint"]
        with open("/proc/self/mountinfo") as f:
            assert any(line.split()[4] == data and " tmpfs " in line for line in f)
        # A second container shares the same tmpfs.
        shared = moor(daemon, "run", "--rm", "-v", "ramdisk:/d", "busybox", "cat", "/d/f")
        assert shared.stdout == "kept\n"
        moor(daemon, "rm", "-f", "ram-user")
        with open("/proc/self/mountinfo") as f:
            assert not any(line.split()[4] == data for line in f)
    finally:
        moor(daemon, "rm", "-f", "ram-user", check=False)
        moor(daemon, "volume", "rm", "ramdisk", check=False)
