"""The container lifecycle through the daemon's API: create, start, wait, logs,
inspect, stop, kill, rm, restart policies, health checks, OOM, live restore."""

from __future__ import annotations

import io
import json
import os
import signal
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from daemon import Daemon, running_daemon
from moorage.api.client import Client
from moorage.engine.logs import unframe
from moorage.errors import Conflict, InvalidArgument, NotFound

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with running_daemon(tmp_path_factory.mktemp("engine") / "moor", busybox=True) as d:
        yield d


@pytest.fixture
def api(daemon: Daemon) -> Iterator[Client]:
    client = Client(str(daemon.socket), timeout=120)
    yield client
    daemon.remove_containers()


def _create(api: Client, cmd: list[str], name: str | None = None, **extra: Any) -> str:
    body: dict[str, Any] = {"Image": "busybox", "Cmd": cmd, **extra}
    params = {"name": name} if name else None
    return str(
        api.request("POST", "/containers/create", params=params, json_body=body).json()["Id"]
    )


def _run(api: Client, cmd: list[str], **extra: Any) -> tuple[str, int]:
    cid = _create(api, cmd, **extra)
    api.request("POST", f"/containers/{cid}/start").read()
    code = api.request("POST", f"/containers/{cid}/wait").json()["StatusCode"]
    return cid, int(code)


def _inspect(api: Client, cid: str) -> dict[str, Any]:
    return dict(api.get_json(f"/containers/{cid}/json"))


def _logs(api: Client, cid: str, **params: Any) -> dict[int, bytes]:
    raw = api.request(
        "GET", f"/containers/{cid}/logs", params={"stdout": 1, "stderr": 1, **params}
    ).read()
    out: dict[int, bytes] = {1: b"", 2: b""}
    for stream, data in unframe(raw):
        out[stream] += data
    return out


def _await(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def test_run_to_completion_with_logs_and_exit_code(api: Client) -> None:
    cid, code = _run(api, ["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert code == 3
    logs = _logs(api, cid)
    assert logs == {1: b"out\n", 2: b"err\n"}
    state = _inspect(api, cid)["State"]
    assert state["Status"] == "exited"
    assert state["ExitCode"] == 3
    assert not state["Running"]
    assert state["FinishedAt"] > state["StartedAt"]


def test_image_config_is_honoured(api: Client) -> None:
    cid, code = _run(
        api,
        ["sh", "-c", 'echo "$PATH $FOO $(pwd) $(id -u)"'],
        Env=["FOO=bar"],
        WorkingDir="/tmp",
        User="65534",
    )
    assert code == 0
    assert _logs(api, cid)[1].decode().split()[1:] == ["bar", "/tmp", "65534"]


def test_missing_entrypoint_gives_127_and_dockers_message(api: Client) -> None:
    cid = _create(api, ["no-such-binary"])
    with pytest.raises(InvalidArgument, match="no-such-binary"):
        api.request("POST", f"/containers/{cid}/start").read()
    state = _inspect(api, cid)["State"]
    assert state["Status"] == "exited"
    assert state["ExitCode"] == 127
    assert "no-such-binary" in state["Error"]


def test_bad_input_is_refused_with_the_input_named(api: Client) -> None:
    with pytest.raises(NotFound, match="nosuchimage"):
        _create(api, ["true"], Image="nosuchimage")
    with pytest.raises(InvalidArgument, match="Env"):
        _create(api, ["true"], Env=["=x"])
    with pytest.raises(InvalidArgument, match="restart policy"):
        _create(api, ["true"], HostConfig={"RestartPolicy": {"Name": "sometimes"}})
    with pytest.raises(NotFound, match="No such container: nope"):
        api.request("POST", "/containers/nope/start").read()
    _create(api, ["true"], name="taken")
    with pytest.raises(Conflict, match='"/taken" is already in use'):
        _create(api, ["true"], name="taken")


def test_stop_kill_and_remove(api: Client) -> None:
    cid = _create(api, ["sleep", "1000"], name="sleeper")
    api.request("POST", f"/containers/{cid}/start").read()
    assert _inspect(api, "sleeper")["State"]["Running"]
    with pytest.raises(Conflict, match="cannot remove a running container"):
        api.request("DELETE", f"/containers/{cid}").read()
    api.request("POST", f"/containers/{cid}/stop", params={"t": 1}).read()
    state = _inspect(api, cid)["State"]
    assert state["Status"] == "exited"
    assert state["ExitCode"] == 137
    response = api.request("POST", f"/containers/{cid}/stop")
    response.read()
    assert response.status == 304
    api.request("POST", f"/containers/{cid}/start").read()
    api.request("POST", f"/containers/{cid}/kill", params={"signal": "SIGTERM"}).read()
    api.request("POST", f"/containers/{cid}/kill").read()
    api.request("POST", f"/containers/{cid}/wait").read()
    api.request("DELETE", f"/containers/{cid}").read()
    with pytest.raises(NotFound):
        _inspect(api, cid)


def test_ps_lists_and_filters(api: Client) -> None:
    running = _create(api, ["sleep", "1000"], name="ps-running", Labels={"tier": "web"})
    api.request("POST", f"/containers/{running}/start").read()
    exited, _ = _run(api, ["true"])
    ids = [c["Id"] for c in api.get_json("/containers/json")]
    assert running in ids
    assert exited not in ids
    everything = {c["Id"]: c for c in api.get_json("/containers/json", all=1)}
    assert everything[exited]["Status"].startswith("Exited (0)")
    assert everything[running]["Status"].startswith("Up")
    assert everything[running]["Names"] == ["/ps-running"]
    labelled = api.get_json("/containers/json", all=1, filters=json.dumps({"label": ["tier=web"]}))
    assert [c["Id"] for c in labelled] == [running]


def test_auto_remove(api: Client) -> None:
    cid = _create(api, ["true"], HostConfig={"AutoRemove": True})
    api.request("POST", f"/containers/{cid}/start").read()
    api.request("POST", f"/containers/{cid}/wait", params={"condition": "removed"}).read()
    with pytest.raises(NotFound):
        _inspect(api, cid)


def test_restart_policy_on_failure(api: Client) -> None:
    cid, _ = _run(
        api,
        ["sh", "-c", "echo run; exit 1"],
        HostConfig={"RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 2}},
    )
    _await(lambda: _inspect(api, cid)["RestartCount"] == 2)
    _await(lambda: _inspect(api, cid)["State"]["Status"] == "exited")
    assert _logs(api, cid)[1] == b"run\n" * 3


def test_health_check_turns_healthy(api: Client) -> None:
    cid = _create(
        api,
        ["sleep", "1000"],
        Healthcheck={"Test": ["CMD-SHELL", "test -e /tmp/ok"], "Interval": 100_000_000},
    )
    api.request("POST", f"/containers/{cid}/start").read()
    assert _inspect(api, cid)["State"]["Health"]["Status"] == "starting"
    exec_id = api.request(
        "POST", f"/containers/{cid}/exec", json_body={"Cmd": ["touch", "/tmp/ok"]}
    ).json()["Id"]
    api.request("POST", f"/exec/{exec_id}/start", json_body={"Detach": True}).read()
    _await(lambda: _inspect(api, cid)["State"]["Health"]["Status"] == "healthy")
    listed = api.get_json("/containers/json", filters=json.dumps({"id": [cid]}))
    assert listed[0]["Status"].endswith("(healthy)")


def test_memory_limit_oom_is_reported(api: Client) -> None:
    cid, code = _run(
        api,
        ["sh", "-c", "x=a; while true; do x=$x$x; done"],
        HostConfig={"Memory": 32 * 1024 * 1024, "MemorySwap": 32 * 1024 * 1024},
    )
    assert code == 137
    assert _inspect(api, cid)["State"]["OOMKilled"] is True


def test_exec_detached_and_inspect(api: Client) -> None:
    cid = _create(api, ["sleep", "1000"])
    api.request("POST", f"/containers/{cid}/start").read()
    exec_id = api.request(
        "POST", f"/containers/{cid}/exec", json_body={"Cmd": ["sh", "-c", "exit 5"]}
    ).json()["Id"]
    api.request("POST", f"/exec/{exec_id}/start", json_body={"Detach": True}).read()
    _await(lambda: api.get_json(f"/exec/{exec_id}/json")["ExitCode"] == 5)
    with pytest.raises(Conflict):
        api.request("POST", f"/exec/{exec_id}/start", json_body={"Detach": True}).read()


def test_pause_unpause_rename(api: Client) -> None:
    cid = _create(api, ["sleep", "1000"], name="before")
    api.request("POST", f"/containers/{cid}/start").read()
    api.request("POST", f"/containers/{cid}/pause").read()
    assert _inspect(api, cid)["State"]["Status"] == "paused"
    api.request("POST", f"/containers/{cid}/unpause").read()
    assert _inspect(api, cid)["State"]["Status"] == "running"
    api.request("POST", f"/containers/{cid}/rename", params={"name": "after"}).read()
    assert _inspect(api, "after")["Name"] == "/after"


def test_volumes_named_anonymous_and_copy_up(api: Client) -> None:
    cid, code = _run(
        api,
        ["sh", "-c", "ls /etc/passwd-copy >/dev/null 2>&1; echo data > /v/file"],
        HostConfig={"Binds": ["vol1:/v"]},
    )
    assert code == 0
    cid2, code = _run(api, ["cat", "/v/file"], HostConfig={"Binds": ["vol1:/v:ro"]})
    assert _logs(api, cid2)[1] == b"data\n"
    # A new named volume at /etc is filled from the image's /etc on first use.
    cid3, code = _run(api, ["cat", "/etc/passwd"], HostConfig={"Binds": ["etcvol:/etc"]})
    assert b"root" in _logs(api, cid3)[1]
    mounts = _inspect(api, cid3)["Mounts"]
    assert mounts[0]["Type"] == "volume"
    assert mounts[0]["Name"] == "etcvol"
    for c in (cid, cid2, cid3):
        api.request("DELETE", f"/containers/{c}").read()
    for v in ("vol1", "etcvol"):
        api.request("DELETE", f"/volumes/{v}").read()


def test_read_only_rootfs_and_no_new_privileges(api: Client) -> None:
    cid, code = _run(api, ["touch", "/x"], HostConfig={"ReadonlyRootfs": True})
    assert code != 0
    assert b"Read-only file system" in _logs(api, cid)[2]
    cid, code = _run(
        api,
        ["sh", "-c", "grep NoNewPrivs /proc/self/status"],
        HostConfig={"SecurityOpt": ["no-new-privileges"]},
    )
    assert _logs(api, cid)[1].split() == [b"NoNewPrivs:", b"1"]


def test_live_restore_after_kill_9(daemon: Daemon, api: Client) -> None:
    running = _create(api, ["sh", "-c", "while true; do echo tick; sleep 0.1; done"])
    api.request("POST", f"/containers/{running}/start").read()
    finishing = _create(api, ["sh", "-c", "sleep 1; exit 42"])
    api.request("POST", f"/containers/{finishing}/start").read()
    pid = _inspect(api, running)["State"]["Pid"]
    log_path = _inspect(api, running)["LogPath"]
    daemon.kill(signal.SIGKILL)
    # With no daemon, the container runs on and its output is still logged.
    size = os.path.getsize(log_path)
    _await(lambda: os.path.getsize(log_path) > size)
    # The other one exits on its own meanwhile; its monitor records the code.
    finishing_state = Path(log_path).parent.parent / finishing / "state.json"
    _await(lambda: json.loads(finishing_state.read_text()).get("status") == "exited")
    daemon.start()
    api = Client(str(daemon.socket), timeout=60)
    state = _inspect(api, running)["State"]
    assert state["Running"]
    assert state["Pid"] == pid
    assert _inspect(api, finishing)["State"]["ExitCode"] == 42
    api.request("POST", f"/containers/{running}/stop", params={"t": 0}).read()
    assert _inspect(api, running)["State"]["ExitCode"] == 137


def test_an_image_in_use_is_not_removed(api: Client, daemon: Daemon, tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs.tar"
    with tarfile.open(rootfs, "w") as tar:
        info = tarfile.TarInfo("hello")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    daemon.moor("import", str(rootfs), "inuse:1")
    cid = _create(api, ["true"], Image="inuse:1")
    with pytest.raises(Conflict, match=f"container {cid[:12]} is using its referenced image"):
        api.request("DELETE", "/images/inuse:1").read()
    image_id = _inspect(api, cid)["Image"]
    api.request("DELETE", "/images/inuse:1", params={"force": 1}).read()
    # Untagged, but still there for the container.
    assert api.get_json(f"/images/{image_id}/json")["Id"] == image_id
    api.request("DELETE", f"/containers/{cid}").read()
