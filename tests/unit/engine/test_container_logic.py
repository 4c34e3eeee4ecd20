"""The container service's pure rules: names, statuses, filters, restart policies,
merged configs, /etc files and user lookup, events."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from moorage.engine import container_config as cfg
from moorage.engine.container_filters import ContainerFilter, normalise
from moorage.engine.container_record import (
    Container,
    State,
    check_name,
    parse_rfc3339,
)
from moorage.engine.etcfiles import hosts_file, lookup_user, resolv_conf
from moorage.engine.events import EventBus
from moorage.engine.humanize import human_duration
from moorage.engine.restart import Backoff, should_restart
from moorage.engine.specgen import parse_create
from moorage.errors import InvalidArgument
from moorage.oci.image import ContainerConfig, Healthcheck


def _container(**kw: object) -> Container:
    base: dict[str, object] = {
        "id": "a" * 64,
        "name": "web",
        "created": "2026-11-25T10:00:00.000000000Z",
        "image": "busybox",
        "image_id": "sha256:" + "b" * 64,
        "path": "sh",
        "args": ["-c", "true"],
        "config": {"Labels": {"app": "web"}},
        "host_config": {},
        "request": {},
        "snapshot_key": "container-x",
        "top_layer": "sha256:c",
    }
    base.update(kw)
    return Container(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.2, "Less than a second"),
        (1, "1 second"),
        (59, "59 seconds"),
        (60, "About a minute"),
        (125, "2 minutes"),
        (3600, "About an hour"),
        (3 * 3600, "3 hours"),
        (3 * 86400, "3 days"),
        (20 * 86400, "2 weeks"),
        (100 * 86400, "3 months"),
        (800 * 86400, "2 years"),
    ],
)
def test_human_duration_matches_docker(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


def test_names_are_checked_as_docker_does() -> None:
    assert check_name("/web-1.a_b") == "web-1.a_b"
    for bad in ("a", "-x", "x y", "x/y", ""):
        with pytest.raises(InvalidArgument, match="Invalid container name"):
            check_name(bad)


def test_status_text_for_each_state() -> None:
    now = parse_rfc3339("2026-11-25T10:05:00Z")
    c = _container()
    assert c.status_text(now) == "Created"
    c.state = State(status="running", started_at="2026-11-25T10:02:00Z")
    assert c.status_text(now) == "Up 3 minutes"
    c.state.health = {"Status": "healthy"}
    assert c.status_text(now) == "Up 3 minutes (healthy)"
    c.state.status = "paused"
    assert c.status_text(now) == "Up 3 minutes (Paused)"
    c.state = State(status="exited", exit_code=3, finished_at="2026-11-25T10:04:58Z")
    assert c.status_text(now) == "Exited (3) 2 seconds ago"


def test_record_round_trips(tmp_path: Path) -> None:
    c = _container()
    c.state = State(status="exited", exit_code=7)
    c.save(str(tmp_path))
    back = Container.load(str(tmp_path))
    assert back == c
    assert not list(tmp_path.glob("*.tmp"))


def test_filters() -> None:
    running = _container(state=State(status="running"))
    exited = _container(id="b" * 64, name="db", state=State(status="exited", exit_code=1))

    class Service:
        def get(self, ref: str) -> Container:
            return running

    def keep(filters: dict[str, list[str]]) -> list[str]:
        match = ContainerFilter(filters, Service())
        return [c.name for c in (running, exited) if match(c)]

    assert keep({"status": ["exited"]}) == ["db"]
    assert keep({"exited": ["1"]}) == ["db"]
    assert keep({"name": ["we"]}) == ["web"]
    assert keep({"label": ["app=web"]}) == ["web", "db"]
    assert keep({"label": ["app=db"]}) == []
    assert keep({"id": ["bbb"]}) == ["db"]
    with pytest.raises(InvalidArgument, match="invalid filter 'colour'"):
        normalise({"colour": ["red"]})
    with pytest.raises(InvalidArgument, match="status=sleeping"):
        normalise({"status": ["sleeping"]})


def test_restart_policies() -> None:
    always = {"Name": "always"}
    assert should_restart(always, 0, 5, False)
    assert not should_restart(always, 0, 5, True)
    assert not should_restart({"Name": "no"}, 1, 0, False)
    on_failure = {"Name": "on-failure", "MaximumRetryCount": 2}
    assert should_restart(on_failure, 1, 1, False)
    assert not should_restart(on_failure, 1, 2, False)
    assert not should_restart(on_failure, 0, 0, False)


def test_backoff_doubles_and_resets() -> None:
    b = Backoff()
    quick = ("2026-11-25T10:00:00Z", "2026-11-25T10:00:01Z")
    assert b.next_delay(*quick) == pytest.approx(0.1)
    assert b.next_delay(*quick) == pytest.approx(0.2)
    assert b.next_delay(*quick) == pytest.approx(0.4)
    assert b.next_delay("2026-11-25T10:00:00Z", "2026-11-25T10:00:30Z") == pytest.approx(0.1)
    for _ in range(20):
        delay = b.next_delay(*quick)
    assert delay == 60.0


def test_restart_policy_validation() -> None:
    assert cfg.restart_policy({}) == {"Name": "no", "MaximumRetryCount": 0}
    with pytest.raises(InvalidArgument, match="unknown policy 'sometimes'"):
        cfg.restart_policy({"RestartPolicy": {"Name": "sometimes"}})
    with pytest.raises(InvalidArgument, match="only be used with 'on-failure'"):
        cfg.restart_policy({"RestartPolicy": {"Name": "always", "MaximumRetryCount": 3}})


def test_log_config_and_healthcheck_validation() -> None:
    cfg.check_log_config({"Type": "json-file", "Config": {"max-size": "1m"}})
    with pytest.raises(InvalidArgument, match='"syslog"'):
        cfg.check_log_config({"Type": "syslog"})
    with pytest.raises(InvalidArgument, match="Healthcheck.Test"):
        cfg.healthcheck({"Test": ["SOMETIMES", "x"]})
    with pytest.raises(InvalidArgument, match="Healthcheck.Interval"):
        cfg.healthcheck({"Test": ["CMD", "true"], "Interval": 5})


def test_merged_config_follows_docker() -> None:
    image = ContainerConfig(
        env=("PATH=/bin", "A=1"),
        entrypoint=("/entry",),
        cmd=("serve",),
        working_dir="/app",
        labels={"from": "image"},
        volumes=("/data",),
        exposed_ports=("80/tcp",),
        healthcheck=Healthcheck(test=("CMD", "true"), interval=10**9),
    )
    body = {"Image": "x", "Env": ["A=2", "B=3"], "Labels": {"mine": "1"}}
    merged = cfg.merged_config(body, parse_create(body), image, "c" * 64, None)
    assert merged["Env"] == ["PATH=/bin", "A=2", "B=3"]
    assert merged["Entrypoint"] == ["/entry"]
    assert merged["Cmd"] == ["serve"]
    assert merged["Hostname"] == "c" * 12
    assert merged["Labels"] == {"from": "image", "mine": "1"}
    assert merged["Volumes"] == {"/data": {}}
    assert merged["ExposedPorts"] == {"80/tcp": {}}
    assert merged["Healthcheck"]["Test"] == ["CMD", "true"]
    # A new entrypoint drops the image's Cmd; an empty one resets it.
    body = {"Image": "x", "Entrypoint": ["sh"]}
    merged = cfg.merged_config(body, parse_create(body), image, "c" * 64, None)
    assert merged["Entrypoint"] == ["sh"]
    assert merged["Cmd"] is None
    body = {"Image": "x", "Entrypoint": [""], "Cmd": ["ls"]}
    merged = cfg.merged_config(body, parse_create(body), image, "c" * 64, None)
    assert merged["Entrypoint"] is None
    assert merged["Cmd"] == ["ls"]


def test_image_config_survives_the_record() -> None:
    image = ContainerConfig(
        env=("A=1",), cmd=("x",), labels={"a": "b"}, healthcheck=Healthcheck(test=("CMD", "y"))
    )
    assert cfg.image_config_from_json(cfg.image_config_json(image)) == image
    assert cfg.image_config_from_json(None) == ContainerConfig()


def test_hosts_and_resolv_conf() -> None:
    text = hosts_file("box", None, ["db:10.0.0.2"])
    assert "127.0.0.1\tlocalhost" in text
    assert "10.0.0.2\tdb" in text
    with pytest.raises(InvalidArgument, match="invalid extra host"):
        hosts_file("box", None, ["nocolon"])
    host = "nameserver 127.0.0.53\nnameserver 10.1.1.1\nsearch corp\noptions ndots:2\n"
    assert resolv_conf(host, [], [], []) == ("nameserver 10.1.1.1\nsearch corp\noptions ndots:2\n")
    assert resolv_conf(host, ["9.9.9.9"], [], []).startswith("nameserver 9.9.9.9\n")


def test_lookup_user_in_an_image_root(tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "passwd").write_text("root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n")
    (etc / "group").write_text("root:x:0:\napp:x:1000:\nwheel:x:10:app\n")
    assert lookup_user(str(tmp_path), "app") == (1000, 1000, [10])
    assert lookup_user(str(tmp_path), "1000") == (1000, 1000, [10])
    assert lookup_user(str(tmp_path), "4242") == (4242, 0, [])
    assert lookup_user(str(tmp_path), "app:wheel") == (1000, 10, [])
    assert lookup_user(str(tmp_path), "0:4242") == (0, 4242, [])
    with pytest.raises(InvalidArgument, match="unable to find user nobody"):
        lookup_user(str(tmp_path), "nobody")
    with pytest.raises(InvalidArgument, match="unable to find group staff"):
        lookup_user(str(tmp_path), "app:staff")


def test_user_lookup_cannot_leave_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "passwd").write_text("evil:x:0:0::/:/bin/sh\n")
    os.symlink(str(outside / "passwd"), root / "etc" / "passwd")
    # The absolute symlink resolves inside the root, where nothing is: no user "evil".
    with pytest.raises(InvalidArgument, match="unable to find user evil"):
        lookup_user(str(root), "evil")


def test_event_bus_history_and_listeners() -> None:
    bus = EventBus()
    seen: list[str] = []
    unsubscribe = bus.subscribe(lambda e: seen.append(e["Action"]))
    event = bus.publish("container", "start", "abc", {"image": "busybox", "name": "web"})
    assert event["status"] == "start"
    assert event["from"] == "busybox"
    unsubscribe()
    bus.publish("container", "die", "abc", {"exitCode": "0"})
    assert seen == ["start"]
    assert [e["Action"] for e in bus.history()] == ["start", "die"]
    assert bus.history(since=event["time"] + 10) == []
