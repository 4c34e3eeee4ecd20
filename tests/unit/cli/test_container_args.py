"""The container commands' pure parts: flags -> create body, the values people type
(sizes, durations, ports, env files, mounts, restart policies), what ps/stats/events
print, cp's path rules and safe extraction, the stream demultiplexer."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path
from typing import Any

import click
import pytest

from moorage.api.streams_client import Demultiplexer, StreamError, demux
from moorage.cli import containerfmt as fmt
from moorage.cli import cp, runopts
from moorage.cli.containers import (
    go_bool_flags,
    run_cmd,
    start_exit_status,
    system_prune_warning,
    update_body,
    update_cmd,
)
from moorage.cli.gotemplate import render
from moorage.cli.runopts import CreateFlags, build_create
from moorage.cli.streaming import EscapeDetector
from moorage.errors import InvalidArgument, NotFound

NOW = 1_700_000_000.0


def _body(
    flags: CreateFlags | None = None, args: tuple[str, ...] = (), **kw: Any
) -> dict[str, Any]:
    request = build_create(
        flags or CreateFlags(),
        kw.pop("image", "busybox"),
        args,
        environ=kw.pop("environ", {}),
        cwd=kw.pop("cwd", "/work"),
        **kw,
    )
    return request.body


def _bad(message: str, **flags: Any) -> None:
    with pytest.raises(InvalidArgument, match=message):
        _body(CreateFlags(**flags))


# --------------------------------------------------------------------------- create body


def test_plain_run_is_docker_s_body() -> None:
    body = _body(args=("echo", "hi"))
    assert body["Image"] == "busybox"
    assert body["Cmd"] == ["echo", "hi"]
    assert body["Entrypoint"] is None
    assert (body["AttachStdin"], body["AttachStdout"], body["AttachStderr"]) == (False, True, True)
    assert (body["Tty"], body["OpenStdin"], body["StdinOnce"]) == (False, False, False)
    host = body["HostConfig"]
    assert host["RestartPolicy"] == {"Name": "no", "MaximumRetryCount": 0}
    assert host["NetworkMode"] == "default"
    assert host["LogConfig"] == {"Type": "", "Config": {}}
    assert host["PortBindings"] == {}
    assert not {"ConsoleSize", "Init", "PidsLimit"} & set(host)
    assert body["NetworkingConfig"] == {"EndpointsConfig": {"default": {}}}


def test_interactive_tty_detach_and_console_size() -> None:
    body = _body(CreateFlags(interactive=True, tty=True), console_size=(24, 80))
    assert (body["AttachStdin"], body["OpenStdin"], body["StdinOnce"]) == (True, True, True)
    assert body["HostConfig"]["ConsoleSize"] == [24, 80]
    detached = _body(CreateFlags(interactive=True, detach=True), console_size=(24, 80))
    assert (detached["AttachStdin"], detached["AttachStdout"], detached["StdinOnce"]) == (
        False,
        False,
        False,
    )
    assert detached["OpenStdin"] is True
    assert "ConsoleSize" not in detached["HostConfig"]  # no TTY, no size


def test_entrypoint_empty_string_resets_it() -> None:
    assert _body(CreateFlags(entrypoint=""))["Entrypoint"] == [""]
    assert _body(CreateFlags(entrypoint="/bin/sh"))["Entrypoint"] == ["/bin/sh"]


def test_resources_and_host_flags() -> None:
    flags = CreateFlags(
        memory="512m",
        memory_swap="-1",
        cpus="1.5",
        cpu_shares="512",
        pids_limit="100",
        shm_size="64m",
        oom_score_adj="-500",
        init=True,
        read_only=True,
        privileged=True,
        cap_add=("NET_ADMIN",),
        cap_drop=("MKNOD",),
        tmpfs=("/run:size=64m",),
        sysctl=("net.ipv4.ip_forward=1",),
        dns=("1.1.1.1",),
        add_host=("db:10.0.0.2", "v6=[::1]"),
        ulimit=("nofile=1024:2048", "nofile=10"),
        security_opt=("no-new-privileges", "systempaths=unconfined"),
        log_driver="json-file",
        log_opt=("max-size=10m",),
        network="host",
        stop_signal="SIGINT",
        stop_timeout="20",
        hostname="box",
        user="1000:1000",
        workdir="/srv",
    )
    body = _body(flags)
    host = body["HostConfig"]
    assert host["Memory"] == 512 * 1024**2
    assert host["MemorySwap"] == -1
    assert host["NanoCpus"] == 1_500_000_000
    assert host["CpuShares"] == 512
    assert host["PidsLimit"] == 100
    assert host["ShmSize"] == 64 * 1024**2
    assert host["OomScoreAdj"] == -500
    assert host["Init"] is True
    assert (host["ReadonlyRootfs"], host["Privileged"]) == (True, True)
    assert (host["CapAdd"], host["CapDrop"]) == (["NET_ADMIN"], ["MKNOD"])
    assert host["Tmpfs"] == {"/run": "size=64m"}
    assert host["Sysctls"] == {"net.ipv4.ip_forward": "1"}
    assert host["Dns"] == ["1.1.1.1"]
    assert host["ExtraHosts"] == ["db:10.0.0.2", "v6:::1"]
    assert host["Ulimits"] == [{"Name": "nofile", "Soft": 10, "Hard": 10}]
    assert host["SecurityOpt"] == ["no-new-privileges"]
    assert (host["MaskedPaths"], host["ReadonlyPaths"]) == ([], [])
    assert host["LogConfig"] == {"Type": "json-file", "Config": {"max-size": "10m"}}
    assert host["NetworkMode"] == "host"
    assert body["NetworkingConfig"] == {"EndpointsConfig": {}}
    assert (body["StopSignal"], body["StopTimeout"]) == ("SIGINT", 20)
    assert (body["Hostname"], body["User"], body["WorkingDir"]) == ("box", "1000:1000", "/srv")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"memory": "3x"}, r'invalid argument "3x" for "-m, --memory" flag: invalid suffix'),
        ({"cpus": "lots"}, "failed to parse lots as a rational number"),
        ({"cpu_shares": "x"}, r'"-c, --cpu-shares" flag: strconv.ParseInt'),
        ({"restart": "always", "rm": True}, "cannot specify both --restart and --rm"),
        ({"log_driver": "syslog"}, 'unsupported log driver "syslog"'),
        ({"dns": ("nope",)}, "IP address is not correctly formatted: nope"),
        ({"add_host": ("nocolon",)}, 'bad format for add-host: "nocolon"'),
        ({"add_host": ("h:300.1.1.1",)}, "invalid IP address in add-host"),
        ({"sysctl": ("kernel.hostname=x",)}, "sysctl 'kernel.hostname=x' is not allowed"),
        ({"security_opt": ("label",)}, 'invalid --security-opt: "label"'),
        ({"pull": "sometimes"}, "invalid pull option: 'sometimes'"),
        ({"stop_timeout": "soon"}, "--stop-timeout"),
        ({"network": "name=x,alias=y"}, "option 'alias' is not supported"),
    ],
)
def test_bad_flags_name_the_input(flags: dict[str, Any], message: str) -> None:
    _bad(message, **flags)


def test_bad_image_reference_is_refused_but_ids_are_names() -> None:
    with pytest.raises(InvalidArgument, match="invalid reference format"):
        _body(image="Busy Box")
    assert _body(image="sha256:" + "a" * 64)["Image"] == "sha256:" + "a" * 64


def test_platform_and_pull_are_returned_for_the_caller() -> None:
    request = build_create(
        CreateFlags(platform="linux/arm64/v8", pull="never"), "busybox", (), environ={}, cwd="/"
    )
    assert (request.platform, request.pull) == ("linux/arm64/v8", "never")
    assert runopts.pull_params("busybox") == {
        "fromImage": "docker.io/library/busybox",
        "tag": "latest",
    }
    assert runopts.image_familiar_name("docker.io/library/busybox") == "busybox:latest"


# --------------------------------------------------------------------------- values


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("42", 42),
        ("10b", 10),
        ("100k", 100 * 1024),
        ("100kb", 100 * 1024),
        ("512m", 512 * 1024**2),
        ("1.5g", int(1.5 * 1024**3)),
        ("1GiB", 1024**3),
        ("2T", 2 * 1024**4),
        ("1 m", 1024**2),
    ],
)
def test_memory_units_are_binary(text: str, expected: int) -> None:
    assert runopts.ram_in_bytes(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("3x", "invalid suffix: 'x'"),
        ("-1m", "invalid size"),
        ("m", "invalid size"),
        ("1kbb", "suffix"),
    ],
)
def test_bad_memory_sizes(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        runopts.ram_in_bytes(text)


def test_cpus_are_exact_rationals() -> None:
    assert runopts.parse_cpus("1.5") == 1_500_000_000
    assert runopts.parse_cpus("3/2") == 1_500_000_000
    assert runopts.parse_cpus("0.01") == 10_000_000
    with pytest.raises(InvalidArgument, match="value is too precise"):
        runopts.parse_cpus("0.0000000001")


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("0", 0),
        ("30s", 30 * 10**9),
        ("1m30s", 90 * 10**9),
        ("500ms", 500 * 10**6),
        ("1.5h", 5400 * 10**9),
        ("2h45m", (2 * 3600 + 45 * 60) * 10**9),
        ("10us", 10_000),
        ("-1s", -(10**9)),
        (".5s", 5 * 10**8),
    ],
)
def test_go_durations(text: str, ns: int) -> None:
    assert runopts.parse_duration(text) == ns


@pytest.mark.parametrize(
    ("text", "message"),
    [("1", "missing unit"), ("1d", 'unknown unit "d"'), ("x", "invalid duration"), ("", "invalid")],
)
def test_bad_go_durations(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        runopts.parse_duration(text)


def test_healthcheck_flags() -> None:
    health = _body(
        CreateFlags(
            health_cmd="curl -f localhost",
            health_interval="30s",
            health_timeout="5s",
            health_start_period="1m",
            health_retries="3",
        )
    )["Healthcheck"]
    assert health == {
        "Test": ["CMD-SHELL", "curl -f localhost"],
        "Interval": 30 * 10**9,
        "Timeout": 5 * 10**9,
        "StartPeriod": 60 * 10**9,
        "StartInterval": 0,
        "Retries": 3,
    }
    assert _body(CreateFlags(no_healthcheck=True))["Healthcheck"] == {"Test": ["NONE"]}
    assert "Healthcheck" not in _body()
    _bad("conflicts with --health-", no_healthcheck=True, health_cmd="true")
    _bad("--health-interval cannot be negative", health_interval="-1s")
    _bad('"--health-timeout" flag: time: invalid duration', health_timeout="soon")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", {"Name": "", "MaximumRetryCount": 0}),
        ("no", {"Name": "no", "MaximumRetryCount": 0}),
        ("always", {"Name": "always", "MaximumRetryCount": 0}),
        ("unless-stopped", {"Name": "unless-stopped", "MaximumRetryCount": 0}),
        ("on-failure", {"Name": "on-failure", "MaximumRetryCount": 0}),
        ("on-failure:5", {"Name": "on-failure", "MaximumRetryCount": 5}),
    ],
)
def test_restart_policies(text: str, expected: dict[str, Any]) -> None:
    assert runopts.parse_restart_policy(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("bogus", "unknown policy 'bogus'"),
        ("always:3", "can only be used with 'on-failure'"),
        ("no:-1", "'on-failure' and cannot be negative"),
        ("on-failure:-1", "cannot be negative"),
        ("on-failure:x", "must be an integer"),
        (":3", "no policy provided before colon"),
    ],
)
def test_bad_restart_policies(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        runopts.parse_restart_policy(text)


def test_ulimits() -> None:
    assert runopts.parse_ulimit("nofile=1024:2048") == {
        "Name": "nofile",
        "Soft": 1024,
        "Hard": 2048,
    }
    assert runopts.parse_ulimit("core=-1") == {"Name": "core", "Soft": -1, "Hard": -1}
    for bad, message in [
        ("nofile", "invalid ulimit argument"),
        ("bogus=1", "invalid ulimit type: bogus"),
        ("nofile=2:1", "soft limit must be less than or equal to hard limit: 2 > 1"),
        ("nofile=1:2:3", "too many limit value arguments"),
        ("nofile=x", "not an integer"),
    ]:
        with pytest.raises(InvalidArgument, match=message):
            runopts.parse_ulimit(bad)


def test_timestamps_for_since_and_until() -> None:
    assert runopts.timestamp_arg("10m", now=NOW) == str(int(NOW - 600))
    assert runopts.timestamp_arg("2023-11-14T22:13:20Z") == "1700000000.000000000"
    assert runopts.timestamp_arg("2023-11-14T22:13:20.5+00:00") == "1700000000.500000000"
    assert runopts.timestamp_arg("1700000000.25") == "1700000000.25"
    with pytest.raises(InvalidArgument, match="failed to parse value as time or duration"):
        runopts.timestamp_arg("yesterday")


# --------------------------------------------------------------------------- env files


def test_env_file_rules(tmp_path: Path) -> None:
    path = tmp_path / "env"
    path.write_bytes(
        b"\xef\xbb\xbf# a comment\r\n"
        b"\n"
        b"   INDENTED=yes\n"
        b'QUOTED="kept as is"\n'
        b"FROM_HOST\n"
        b"NOT_SET\n"
        b"EMPTY=\n"
        b"SPACES= around =\n"
    )
    env = runopts.parse_env(("LATER=1", "FROM_HOST"), (str(path),), {"FROM_HOST": "h"}.get)
    assert env == [
        "INDENTED=yes",
        'QUOTED="kept as is"',
        "FROM_HOST=h",
        "EMPTY=",
        "SPACES= around =",
        "LATER=1",
        "FROM_HOST=h",
    ]


def test_env_flag_without_value_comes_from_the_environment() -> None:
    assert _body(CreateFlags(env=("A=1", "HOME", "UNSET")), environ={"HOME": "/root"})["Env"] == [
        "A=1",
        "HOME=/root",
    ]
    _bad("invalid environment variable: =x", env=("=x",))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"BAD KEY=1\n", "variable 'BAD KEY' contains whitespaces"),
        (b"=value\n", "no variable name on line '=value'"),
        (b"OK=1\nX=\xff\n", "invalid utf8 bytes at line 2"),
    ],
)
def test_bad_env_files_name_the_file(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.env"
    path.write_bytes(content)
    with pytest.raises(InvalidArgument, match=f"invalid env file \\({path}\\): {message}"):
        runopts.parse_env((), (str(path),), lambda name: None)


def test_missing_env_file() -> None:
    _bad("--env-file: open /no/such/file: no such file or directory", env_file=("/no/such/file",))


def test_labels_and_label_files(tmp_path: Path) -> None:
    path = tmp_path / "labels"
    path.write_text("# labels\nteam=core\nbare\n")
    labels = runopts.parse_labels(("a=1", "b"), (str(path),))
    assert labels == {"team": "core", "a": "1", "b": ""}
    with pytest.raises(InvalidArgument, match="empty name"):
        runopts.parse_labels(("=x",), ())


# --------------------------------------------------------------------------- volumes, mounts


def test_volume_specs() -> None:
    binds, anonymous = runopts.parse_volumes(
        ("data:/data:ro", "/host:/ctr:rw,rslave", "./rel:/rel", "/anon"), "/work"
    )
    assert binds == ["data:/data:ro", "/host:/ctr:rw,rslave", "/work/rel:/rel"]
    assert anonymous == {"/anon": {}}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "invalid empty volume spec"),
        ("a:b:c:d", "too many colons"),
        ("a::/x", "empty section between colons"),
        ("data:relative", "mount path must be absolute"),
        ("/host:/", "destination can't be '/'"),
        ("/host:/ctr:bogus", "invalid mode: bogus"),
        ("~/x:/x", "includes invalid characters for a local volume name"),
    ],
)
def test_bad_volume_specs(spec: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        runopts.parse_volumes((spec,), "/work")


def test_mount_csv() -> None:
    assert runopts.parse_mount("type=bind,source=/src,target=/dst,readonly", "/w") == {
        "Type": "bind",
        "Source": "/src",
        "Target": "/dst",
        "ReadOnly": True,
    }
    assert runopts.parse_mount("type=bind,src=./here,dst=/d,bind-propagation=rshared", "/w") == {
        "Type": "bind",
        "Source": "/w/here",
        "Target": "/d",
        "BindOptions": {"Propagation": "rshared"},
    }
    assert runopts.parse_mount("source=vol,target=/v,volume-nocopy,volume-label=a=b", "/") == {
        "Type": "volume",
        "Source": "vol",
        "Target": "/v",
        "VolumeOptions": {"NoCopy": True, "Labels": {"a": "b"}},
    }
    assert runopts.parse_mount("type=tmpfs,target=/t,tmpfs-size=64m,tmpfs-mode=1777", "/") == {
        "Type": "tmpfs",
        "Target": "/t",
        "TmpfsOptions": {"SizeBytes": 64 * 1024**2, "Mode": 0o1777},
    }
    # csv quoting, as docker's reader does it
    assert runopts.parse_mount('type=bind,"source=/a,b",target=/c', "/")["Source"] == "/a,b"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("type=volume,target=/v,bind-propagation=shared", "cannot mix 'bind-\\*' options"),
        ("type=bind,source=/s", "target is required"),
        ("type=bind,source=/s,target=rel", "mount path must be absolute"),
        ("type=bind,source=rel,target=/t", "'rel' mount path must be absolute"),
        ("type=tmpfs,source=/s,target=/t", "source must not be specified"),
        ("type=volume,target=/v,colour=red", "unexpected key 'colour'"),
        ("type=bind,source=/s,target=/t,readonly=maybe", "invalid value for readonly: maybe"),
        ("type=tmpfs,target=/t,tmpfs-size=big", "invalid value for tmpfs-size: big"),
        ("type=npipe,target=/t", "unsupported mount type 'npipe'"),
        ("type=bind,source=/s,target=/t,bogus", "must be a key=value pair"),
    ],
)
def test_bad_mounts(spec: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        runopts.parse_mount(spec, "/")


# --------------------------------------------------------------------------- ports


def test_port_specs() -> None:
    exposed, bindings = runopts.parse_ports(
        ("80", "8080:81", "127.0.0.1:53:53/udp", "[::1]:9000:90", "published=8443,target=443"),
        ("7000-7001/udp",),
    )
    assert exposed == {
        "80/tcp": {},
        "81/tcp": {},
        "53/udp": {},
        "90/tcp": {},
        "443/tcp": {},
        "7000/udp": {},
        "7001/udp": {},
    }
    assert bindings == {
        "80/tcp": [{"HostIp": "", "HostPort": ""}],
        "81/tcp": [{"HostIp": "", "HostPort": "8080"}],
        "53/udp": [{"HostIp": "127.0.0.1", "HostPort": "53"}],
        "90/tcp": [{"HostIp": "::1", "HostPort": "9000"}],
        "443/tcp": [{"HostIp": "", "HostPort": "8443"}],
    }


def test_port_ranges() -> None:
    assert runopts.parse_port_spec("7000-7001:8000-8001") == [
        ("8000/tcp", {"HostIp": "", "HostPort": "7000"}),
        ("8001/tcp", {"HostIp": "", "HostPort": "7001"}),
    ]
    # one container port and a host range: any free port of the range
    assert runopts.parse_port_spec("8000-8010:80") == [
        ("80/tcp", {"HostIp": "", "HostPort": "8000-8010"})
    ]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("80/bogus", "invalid proto: bogus"),
        ("abc", "invalid containerPort: abc"),
        ("70000:80", "invalid hostPort: 70000"),
        ("1.2.3:80:80", "invalid IP address: 1.2.3"),
        ("7000-7002:80-81", "invalid ranges specified"),
        ("90-80", "invalid range specified for port"),
        ("8080:", "no port specified"),
    ],
)
def test_bad_port_specs(spec: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=f'invalid publish spec "{spec}": {message}'):
        runopts.parse_port_spec(spec)


def test_bad_expose() -> None:
    with pytest.raises(InvalidArgument, match="invalid port format for --expose: 80:80"):
        runopts.parse_expose("80:80")
    with pytest.raises(InvalidArgument, match="invalid range format for --expose: x"):
        runopts.parse_expose("x")


# --------------------------------------------------------------------------- ps display


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.5, "Less than a second"),
        (1, "1 second"),
        (59, "59 seconds"),
        (60, "About a minute"),
        (119, "About a minute"),
        (120, "2 minutes"),
        (3599, "59 minutes"),
        (3600, "About an hour"),
        (5400, "2 hours"),
        (86400 * 3, "3 days"),
        (86400 * 20, "2 weeks"),
        (86400 * 90, "3 months"),
        (86400 * 800, "2 years"),
    ],
)
def test_human_durations(seconds: float, text: str) -> None:
    assert fmt.human_duration(seconds) == text


def test_ps_row() -> None:
    summary = {
        "Id": "0123456789abcdef" * 4,
        "Names": ["/web", "/other/alias"],
        "Image": "docker.io/library/busybox:latest",
        "ImageID": "sha256:" + "f" * 64,
        "Command": 'sh -c "while true; do sleep 1; done"',
        "Created": NOW - 5,
        "Ports": [{"IP": "0.0.0.0", "PrivatePort": 3000, "PublicPort": 3000, "Type": "tcp"}],
        "Labels": {"b": "2", "a": "1"},
        "State": "running",
        "Status": "Up 3 seconds",
        "SizeRw": 12,
        "SizeRootFs": 2_140_000,
        "Mounts": [{"Name": "a-very-long-volume-name-indeed", "Driver": "local"}],
        "NetworkSettings": {"Networks": {"bridge": {}}},
    }
    row = fmt.ps_row(summary, now=NOW)
    assert row["ID"] == "0123456789ab"
    assert row["Image"] == "busybox:latest"
    assert row["Command"] == '"sh -c \\"while true; …"'  # 19 characters and the ellipsis
    assert row["RunningFor"] == "5 seconds ago"
    assert row["Ports"] == "0.0.0.0:3000->3000/tcp"
    assert row["Names"] == "web"
    assert row["Labels"] == "a=1,b=2"
    assert row["Size"] == "12B (virtual 2.14MB)"
    assert row["Mounts"] == "a-very-long-vo…"
    assert (row["LocalVolumes"], row["Networks"]) == ("1", "bridge")
    full = fmt.ps_row(summary, trunc=False, now=NOW)
    assert (full["ID"], full["Names"]) == (summary["Id"], "web,other/alias")
    assert full["Command"] == '"sh -c \\"while true; do sleep 1; done\\""'
    assert full["Image"] == "docker.io/library/busybox:latest"


def test_image_column() -> None:
    image_id = "sha256:" + "ab" * 32
    assert fmt.display_image(image_id, image_id, True) == "abababababab"
    assert fmt.display_image("example.com/team/app:1", image_id, True) == "example.com/team/app:1"
    assert fmt.display_image("", image_id, True) == "<no image>"


@pytest.mark.parametrize(
    ("ports", "text"),
    [
        ([], ""),
        ([{"PrivatePort": 80, "Type": "tcp"}], "80/tcp"),
        (
            [{"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"}],
            "0.0.0.0:8080->80/tcp",
        ),
        ([{"IP": "::", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"}], "[::]:8080->80/tcp"),
        (
            [{"PrivatePort": p, "Type": "tcp"} for p in (7002, 7000, 7001)]
            + [{"PrivatePort": 53, "Type": "udp"}],
            "53/udp, 7000-7002/tcp",
        ),
        (
            [
                {"IP": "0.0.0.0", "PrivatePort": 3000, "PublicPort": 3000, "Type": "tcp"},
                {"IP": "0.0.0.0", "PrivatePort": 3001, "PublicPort": 3001, "Type": "tcp"},
            ],
            "0.0.0.0:3000-3001->3000-3001/tcp",
        ),
        (
            [
                {"PrivatePort": 80, "Type": "tcp"},
                {"PrivatePort": 81, "Type": "udp"},
                {"PrivatePort": 85, "Type": "tcp"},
            ],
            "80/tcp, 85/tcp, 81/udp",
        ),
    ],
)
def test_ports_column(ports: list[dict[str, Any]], text: str) -> None:
    assert fmt.display_ports(ports) == text


def test_go_quote_and_ellipsis() -> None:
    assert fmt.go_quote('a"b\\c\n\x01é…') == '"a\\"b\\\\c\\n\\x01é…"'
    assert fmt.ellipsis("abcdef", 4) == "abc…"
    assert fmt.ellipsis("abc", 4) == "abc"


# --------------------------------------------------------------------------- stats


def _stats() -> dict[str, Any]:
    return {
        "id": "f" * 64,
        "name": "/web",
        "cpu_stats": {
            "cpu_usage": {"total_usage": 3_000_000_000, "percpu_usage": [1, 2, 3, 4]},
            "system_cpu_usage": 20_000_000_000,
            "online_cpus": 2,
        },
        "precpu_stats": {
            "cpu_usage": {"total_usage": 2_000_000_000},
            "system_cpu_usage": 10_000_000_000,
        },
        "memory_stats": {
            "usage": 150 * 1024**2,
            "limit": 2 * 1024**3,
            "stats": {"inactive_file": 50 * 1024**2},
        },
        "networks": {
            "eth0": {"rx_bytes": 1500, "tx_bytes": 2_500_000},
            "eth1": {"rx_bytes": 500, "tx_bytes": 0},
        },
        "blkio_stats": {
            "io_service_bytes_recursive": [
                {"op": "read", "value": 4096},
                {"op": "Write", "value": 8_200_000},
                {"op": "total", "value": 1},
            ]
        },
        "pids_stats": {"current": 7},
    }


def test_stats_math() -> None:
    stats = _stats()
    assert fmt.cpu_percent(stats) == pytest.approx(20.0)  # 1s of 10s system time, 2 CPUs
    stats["cpu_stats"]["online_cpus"] = 0
    assert fmt.cpu_percent(stats) == pytest.approx(40.0)  # falls back to the per-CPU count
    assert (
        fmt.memory_usage({"usage": 100, "stats": {"total_inactive_file": 30, "inactive_file": 10}})
        == 70
    )
    assert fmt.memory_usage({"usage": 100, "stats": {"inactive_file": 10}}) == 90
    assert fmt.memory_usage({"usage": 100, "stats": {"inactive_file": 200}}) == 100
    assert fmt.block_io(stats["blkio_stats"]) == (4096, 8_200_000)
    assert fmt.network_io(stats["networks"]) == (2000, 2_500_000)


def test_stats_row() -> None:
    row = fmt.stats_row("web", _stats())
    assert row == {
        "Container": "web",
        "Name": "web",
        "ID": "ffffffffffff",
        "CPUPerc": "20.00%",
        "MemUsage": "100MiB / 2GiB",
        "MemPerc": "4.88%",
        "NetIO": "2kB / 2.5MB",
        "BlockIO": "4.1kB / 8.2MB",
        "PIDs": "7",
    }
    gone = fmt.stats_row("web", None)
    assert (gone["CPUPerc"], gone["MemUsage"], gone["PIDs"]) == ("--", "-- / --", "--")


def test_units() -> None:
    assert fmt.human_size(16_430_000) == "16.43MB"
    assert fmt.human_size(2048, 3) == "2.05kB"
    assert fmt.human_size(0) == "0B"
    assert fmt.bytes_size(1.5 * 1024**2) == "1.5MiB"
    assert fmt.bytes_size(512) == "512B"


# --------------------------------------------------------------------------- events, top, df


def test_event_line() -> None:
    line = fmt.event_line(
        {
            "Type": "container",
            "Action": "start",
            "Actor": {"ID": "abc", "Attributes": {"name": "web", "image": "busybox"}},
            "timeNano": 1_700_000_000_123_456_789,
        }
    )
    assert line.endswith(" container start abc (image=busybox, name=web)")
    assert ".123456789" in line


def test_tabwrite_like_go() -> None:
    lines = fmt.tabwrite([["UID", "PID", "CMD"], ["root", "1234567", "sleep 100"]], 20, 3)
    assert lines == [
        "UID" + " " * 17 + "PID" + " " * 17 + "CMD",
        "root" + " " * 16 + "1234567" + " " * 13 + "sleep 100",
    ]


def test_disk_usage_rows() -> None:
    rows = fmt.disk_usage_rows(
        {
            "LayersSize": 1000,
            "Images": [
                {"Size": 600, "SharedSize": 100, "Containers": 1},
                {"Size": 400, "SharedSize": -1, "Containers": 0},
            ],
            "Containers": [{"SizeRw": 10, "State": "running"}, {"SizeRw": 30, "State": "exited"}],
            "Volumes": [
                {"UsageData": {"Size": 50, "RefCount": 0}},
                {"UsageData": {"Size": -1, "RefCount": 1}},
            ],
            "BuildCache": [],
        }
    )
    assert rows[0] == {
        "Type": "Images",
        "TotalCount": "2",
        "Active": "1",
        "Size": "1kB",
        "Reclaimable": "500B (50%)",
    }
    assert (rows[1]["Reclaimable"], rows[1]["Active"]) == ("30B (75%)", "1")
    assert rows[2] == {
        "Type": "Local Volumes",
        "TotalCount": "2",
        "Active": "1",
        "Size": "50B",
        "Reclaimable": "50B (100%)",
    }
    assert rows[3]["Reclaimable"] == "0B"


def test_system_prune_warning() -> None:
    text = system_prune_warning(True, True, {"label": {"env=dev": True}})
    assert text == (
        "WARNING! This will remove:\n"
        "  - all stopped containers\n"
        "  - all anonymous volumes not used by at least one container\n"
        "  - all images without at least one container associated to them\n"
        "\n  Items to be pruned will be filtered with:\n"
        "  - label=env=dev\n"
        "\nAre you sure you want to continue?"
    )


# --------------------------------------------------------------------------- templates


def test_go_templates() -> None:
    data = {
        "Name": "/web",
        "State": {"Status": "running", "Running": True, "Pid": 42},
        "Config": {"Labels": {"com.x": "y"}, "Env": ["A=1", "B=2"], "Tty": False},
        "Mounts": [{"Source": "/a"}, {"Source": "/b"}],
        "HostConfig": {"Binds": None},
    }
    cases = {
        "{{.State.Status}}": "running",
        "{{.State.Pid}}": "42",
        "{{.Config.Tty}}": "false",
        '{{index .Config.Labels "com.x"}}': "y",
        "{{json .Config.Env}}": '["A=1","B=2"]',
        "{{.Config.Env}}": "[A=1 B=2]",
        "{{.Name | upper}}": "/WEB",
        '{{join .Config.Env ","}}': "A=1,B=2",
        "{{range .Mounts}}{{.Source}};{{end}}": "/a;/b;",
        "{{if .State.Running}}up{{else}}down{{end}}": "up",
        "{{.HostConfig.Binds}}": "<nil>",
        "{{.Nope}}": "<no value>",
        "a {{- .Name -}} b": "a/webb",
        "{{.Config.Labels}}": "map[com.x:y]",
    }
    for template, expected in cases.items():
        assert render(template, data) == expected, template
    with pytest.raises(InvalidArgument, match="missing {{end}}"):
        render("{{range .Mounts}}", data)
    with pytest.raises(InvalidArgument, match='function "nosuch" not defined'):
        render("{{nosuch .Name}}", data)


# --------------------------------------------------------------------------- command line


def test_go_style_boolean_flags() -> None:
    args = ["--sig-proxy=false", "--rm=false", "-d=true", "--tty=true", "-e", "--rm=true"]
    args += ["busybox", "--rm=false"]
    assert go_bool_flags(run_cmd, args) == [
        "--no-sig-proxy",  # the flag's "off" form
        "-d",  # --rm=false is the default: dropped
        "-t",
        "-e",
        "--rm=true",  # the value of -e, not a flag
        "busybox",
        "--rm=false",  # the container's command, untouched
    ]


def test_start_failures_map_to_docker_exit_statuses() -> None:
    assert start_exit_status('exec: "nosuch": executable file not found in $PATH') == 127
    assert start_exit_status("open /x: no such file or directory") == 127
    assert start_exit_status("exec /etc: permission denied") == 126
    assert start_exit_status("cgroup: out of memory") == 125


def test_run_usage_errors_exit_125_and_h_is_hostname() -> None:
    from click.testing import CliRunner

    group = click.Group("moor")
    group.add_command(run_cmd)
    result = CliRunner().invoke(group, ["run", "--no-such-flag", "busybox"])
    assert result.exit_code == 125
    assert "No such option: --no-such-flag" in result.output
    result = CliRunner().invoke(group, ["run", "-h"])
    assert result.exit_code == 125  # -h wants a hostname, as in docker
    assert "Option '-h' requires an argument" in result.output


def test_detach_keys() -> None:
    detector = EscapeDetector()
    assert detector.feed(b"ls\r") == (b"ls\r", False)
    assert detector.feed(b"a\x10") == (b"a", False)  # held: could be the start
    assert detector.feed(b"b") == (b"\x10b", False)  # was not
    assert detector.feed(b"x\x10\x11rest") == (b"x", True)


# --------------------------------------------------------------------------- demultiplexer


def _frame(stream: int, data: bytes) -> bytes:
    return bytes([stream, 0, 0, 0]) + len(data).to_bytes(4, "big") + data


def test_demultiplexer_routes_frames_cut_anywhere() -> None:
    stream = (
        _frame(1, b"out1\n")
        + _frame(2, b"err\n")
        + _frame(0, b"in")
        + _frame(1, b"")
        + _frame(1, b"out2")
    )
    for cut in range(1, len(stream)):
        out, err = io.BytesIO(), io.BytesIO()
        demux([stream[:cut], stream[cut:]], out, err)
        assert (out.getvalue(), err.getvalue()) == (b"out1\ninout2", b"err\n")
    out, err = io.BytesIO(), io.BytesIO()
    demux((stream[i : i + 1] for i in range(len(stream))), out, err)
    assert out.getvalue() == b"out1\ninout2"


def test_demultiplexer_errors() -> None:
    d = Demultiplexer(io.BytesIO(), io.BytesIO())
    with pytest.raises(StreamError, match="daemon went away"):
        d.feed(_frame(3, b"daemon went away"))
    d = Demultiplexer(io.BytesIO(), io.BytesIO())
    with pytest.raises(StreamError, match="unrecognized stream header: 7"):
        d.feed(_frame(7, b"x"))
    d = Demultiplexer(io.BytesIO(), None)
    d.feed(_frame(2, b"dropped") + _frame(1, b"abc")[:5])
    with pytest.raises(StreamError, match="inside a frame"):
        d.close()


# --------------------------------------------------------------------------- cp


def test_cp_arguments() -> None:
    assert cp.split_cp_arg("web:/etc/hosts") == ("web", "/etc/hosts")
    assert cp.split_cp_arg("/abs:with:colons") == ("", "/abs:with:colons")
    assert cp.split_cp_arg("./a:b") == ("", "./a:b")
    assert cp.split_cp_arg("plain") == ("", "plain")
    assert cp.split_path_dir_entry("/a/b/.") == ("/a/b", ".")
    assert cp.split_path_dir_entry("/a/b/") == ("/a", "b")
    assert cp.preserve_trailing_dot_or_separator("/x/d", "d/.") == "/x/d/."
    assert cp.preserve_trailing_dot_or_separator("/x/d", "d/") == "/x/d/"


def test_cp_destination_rules(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_text("x")
    file_src = cp.CopyInfo("/etc/hosts", True, False)
    dir_src = cp.CopyInfo("/etc", True, True)
    content_src = cp.CopyInfo("/etc/.", True, True)

    def where(src: cp.CopyInfo, dst: str) -> tuple[str, str]:
        dst_dir, rename = cp.prepare_archive_copy(src, cp.local_destination_info(dst))
        return dst_dir, rename(src.path.rsplit("/", 1)[1] + "/sub")

    assert where(file_src, str(tmp_path / "dir")) == (str(tmp_path / "dir"), "hosts/sub")
    assert where(file_src, str(tmp_path / "file")) == (str(tmp_path), "file/sub")
    assert where(file_src, str(tmp_path / "new")) == (str(tmp_path), "new/sub")
    assert where(dir_src, str(tmp_path / "new")) == (str(tmp_path), "new/sub")
    assert where(dir_src, str(tmp_path / "dir")) == (str(tmp_path / "dir"), "etc/sub")
    assert where(content_src, str(tmp_path / "dir")) == (str(tmp_path / "dir"), "sub")
    assert where(content_src, str(tmp_path / "new")) == (str(tmp_path), "new/sub")
    with pytest.raises(InvalidArgument, match="cannot copy a directory to a file"):
        where(dir_src, str(tmp_path / "file"))
    with pytest.raises(NotFound, match="no such directory"):
        where(file_src, str(tmp_path / "new") + "/")
    with pytest.raises(NotFound, match="no such directory"):
        cp.local_destination_info(str(tmp_path / "missing" / "x"))


def _tar(*members: tuple[str, str, str | bytes]) -> io.BytesIO:
    """(kind, name, data-or-linkname) -> a tar in memory; kinds: file, dir, sym, hard, chr."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for kind, name, payload in members:
            info = tarfile.TarInfo(name)
            info.mode = 0o644
            data = b""
            if kind == "file":
                data = payload if isinstance(payload, bytes) else payload.encode()
                info.size = len(data)
            elif kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
            elif kind == "sym":
                info.type, info.linkname = tarfile.SYMTYPE, str(payload)
            elif kind == "hard":
                info.type, info.linkname = tarfile.LNKTYPE, str(payload)
            elif kind == "chr":
                info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
            tar.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    return buffer


def _nothing_outside(base: Path) -> None:
    assert not (base / "escaped").exists()
    assert not (base / "etc-target" / "passwd").exists()


@pytest.mark.parametrize(
    "members",
    [
        [("file", "../escaped", "x")],
        [("file", "dir/../../escaped", "x")],
        [("file", "/escaped", "x")],
        [("sym", "up", "../.."), ("file", "up/escaped", "x")],
        [("sym", "abs", "ABS_TARGET"), ("file", "abs/passwd", "owned")],
        [("sym", "abs", "ABS_TARGET/passwd"), ("file", "abs", "owned")],
        [("hard", "link", "/etc/passwd")],
        [("hard", "link", "../escaped")],
    ],
)
def test_extraction_never_writes_outside(
    tmp_path: Path, members: list[tuple[str, str, str]]
) -> None:
    target = tmp_path / "etc-target"
    target.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    fixed = [(k, n, str(p).replace("ABS_TARGET", str(target))) for k, n, p in members]
    with pytest.raises(cp.UnsafeArchive, match="refusing to extract"):
        cp.extract(_tar(*fixed), str(dest))
    _nothing_outside(tmp_path)


def test_extraction_of_a_sane_tree(tmp_path: Path) -> None:
    archive = _tar(
        ("dir", "etc", ""),
        ("file", "etc/hosts", "127.0.0.1 localhost\n"),
        ("sym", "etc/localtime", "/usr/share/zoneinfo/UTC"),  # absolute: kept, as docker does
        ("sym", "etc/mtab", "../proc/self/mounts"),
        ("hard", "etc/hosts.bak", "etc/hosts"),
        ("chr", "etc/null", ""),
    )
    skipped = cp.extract(archive, str(tmp_path), cp.rebaser("etc", "copy"))
    assert skipped == ["etc/null"]
    assert (tmp_path / "copy" / "hosts").read_text() == "127.0.0.1 localhost\n"
    assert (tmp_path / "copy" / "hosts.bak").read_text() == "127.0.0.1 localhost\n"
    assert os.readlink(tmp_path / "copy" / "localtime") == "/usr/share/zoneinfo/UTC"
    assert os.readlink(tmp_path / "copy" / "mtab") == "../proc/self/mounts"
    assert not (tmp_path / "copy" / "null").exists()


def test_renaming_cannot_smuggle_a_climb(tmp_path: Path) -> None:
    with pytest.raises(cp.UnsafeArchive):
        cp.extract(_tar(("file", "a", "x")), str(tmp_path), lambda name: "../" + name)


def test_tar_producer_round_trip(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "f.txt").write_text("hello")
    os.symlink("sub/f.txt", src / "link")
    producer = cp.TarProducer(str(src), cp.rebaser("src", "renamed"))
    data = producer.reader.read()
    producer.finish()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        names = sorted(tar.getnames())
        assert tar.getmember("renamed/link").linkname == "sub/f.txt"
    assert names == ["renamed", "renamed/link", "renamed/sub", "renamed/sub/f.txt"]
    producer = cp.TarProducer(str(src) + "/.", cp.rebaser(".", "."))
    with tarfile.open(fileobj=io.BytesIO(producer.reader.read())) as tar:
        assert sorted(tar.getnames()) == [".", "link", "sub", "sub/f.txt"]
    producer.finish()


def test_path_stat_header() -> None:
    import base64
    import json

    header = base64.b64encode(
        json.dumps({"name": "etc", "mode": (1 << 31) | 0o755}).encode()
    ).decode()
    stat = cp.path_stat(header)
    kinds = (cp.stat_is_dir(stat), cp.stat_is_symlink(stat), cp.stat_is_regular(stat))
    assert kinds == (True, False, False)
    assert cp.stat_is_regular({"mode": 0o644})
    with pytest.raises(Exception, match="malformed"):
        cp.path_stat("!!!")


def test_timestamps_keep_their_nanoseconds() -> None:
    stamp = "2023-11-14T22:13:20.123456789Z"
    assert runopts.timestamp_arg(stamp) == "1700000000.123456789"
    assert runopts.timestamp_arg("2023-11-14T23:13:20.000000001+01:00") == "1700000000.000000001"


# --------------------------------------------------------------------------- update body


def _update_body(**flags: str) -> dict[str, Any]:
    every = {p.name: None for p in update_cmd.params if isinstance(p, click.Option)}
    return update_body({**every, **flags})


def test_update_sends_only_what_its_flags_set() -> None:
    body = _update_body(
        memory="64m", memory_swap="-1", cpus="0.5", cpu_shares="512", cpu_period="50000",
        cpu_quota="-1", cpuset_cpus="0-1", pids_limit="-1", restart="on-failure:3",
    )  # fmt: skip

    assert body == {
        "Memory": 64 << 20,
        "MemorySwap": -1,
        "NanoCpus": 500_000_000,
        "CpuShares": 512,
        "CpuPeriod": 50000,
        "CpuQuota": -1,
        "CpusetCpus": "0-1",
        "PidsLimit": -1,
        "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 3},
    }


def test_update_leaves_the_restart_policy_name_to_the_daemon() -> None:
    assert _update_body(restart="sometimes") == {
        "RestartPolicy": {"Name": "sometimes", "MaximumRetryCount": 0}
    }


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"memory": "lots"}, 'invalid argument "lots" for "-m, --memory" flag'),
        ({"pids_limit": "x"}, 'invalid argument "x" for "--pids-limit" flag'),
        ({"restart": ":3"}, "no policy provided before colon"),
        ({"restart": "on-failure:x"}, "maximum retry count must be an integer"),
    ],
)
def test_update_flags_with_bad_syntax(flags: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        _update_body(**flags)


def test_update_wants_a_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        _update_body()

    assert exited.value.code == 1
    assert capsys.readouterr().err == "you must provide one or more flags when using this command\n"
