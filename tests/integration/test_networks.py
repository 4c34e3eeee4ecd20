"""Container networking through `moor`, with real traffic: the default bridge, published
ports reached from the host (127.0.0.1 and its other addresses), from another container
and from "another machine" (a network namespace of its own, routed to this host),
user-defined networks with DNS by name and alias, isolation between networks, internal
networks, connect/disconnect, bad input, and a daemon that restarts after kill -9.

Every container, network, namespace and veth a test makes goes at its end; the daemon
fixture removes its bridges and nftables table (tests/netclean.py)."""

from __future__ import annotations

import ipaddress
import json
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from daemon import Daemon, running_daemon

pytestmark = pytest.mark.root

HTTPD = (
    "mkdir -p /www && echo hello-from-$(hostname) > /www/index.html && exec httpd -f -p 80 -h /www"
)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with running_daemon(tmp_path_factory.mktemp("networks") / "moor", busybox=True) as d:
        yield d


@pytest.fixture
def cleanup(daemon: Daemon) -> Iterator[Callable[[str, str], None]]:
    """``cleanup(kind, name)``: removed at the test's end, containers first."""
    made: list[tuple[str, str]] = []
    yield lambda kind, name: made.append((kind, name))
    for kind, name in sorted(made, key=lambda m: m[0] != "container"):
        if kind == "container":
            daemon.moor("rm", "-f", name, check=False)
        else:
            daemon.moor("network", "rm", name, check=False)


def _out(result: subprocess.CompletedProcess[bytes]) -> str:
    return result.stdout.decode()


def _inspect(daemon: Daemon, name: str) -> dict:  # type: ignore[type-arg]
    return json.loads(_out(daemon.moor("inspect", name)))[0]  # type: ignore[no-any-return]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        return int(s.getsockname()[1])


def _http_get(host: str, port: int, timeout: float = 2.0) -> str:
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(b"GET /index.html HTTP/1.0\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data.decode(errors="replace")


def _await(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _serves(host: str, port: int) -> Callable[[], bool]:
    def check() -> bool:
        try:
            return "hello-from-" in _http_get(host, port, timeout=1.0)
        except OSError:
            return False

    return check


def _run_httpd(daemon: Daemon, cleanup: Callable[[str, str], None], *args: str) -> str:
    name = f"web-{uuid.uuid4().hex[:6]}"
    cleanup("container", name)
    daemon.moor("run", "-d", "--name", name, *args, "busybox", "sh", "-c", HTTPD)
    return name


def _exec(
    daemon: Daemon, name: str, *cmd: str, check: bool = True
) -> subprocess.CompletedProcess[bytes]:
    return daemon.moor("exec", name, *cmd, check=check)


# --------------------------------------------------------------------------- default bridge


def test_a_container_on_the_default_bridge_has_an_address_and_a_route(daemon: Daemon) -> None:
    out = _out(daemon.moor("run", "--rm", "busybox", "sh", "-c", "ip -4 addr show eth0; ip route"))
    address = next(line.split()[1] for line in out.splitlines() if "inet " in line)
    interface = ipaddress.ip_interface(address)
    bridge = json.loads(_out(daemon.moor("network", "inspect", "bridge")))[0]
    subnet = ipaddress.ip_network(bridge["IPAM"]["Config"][0]["Subnet"])
    gateway = bridge["IPAM"]["Config"][0]["Gateway"]
    assert interface.ip in subnet
    assert f"default via {gateway}" in out


def test_inspect_shows_the_address_while_running_and_none_after(
    daemon: Daemon, cleanup: Callable[[str, str], None]
) -> None:
    name = f"addr-{uuid.uuid4().hex[:6]}"
    cleanup("container", name)
    daemon.moor("run", "-d", "--name", name, "busybox", "sleep", "300")
    settings = _inspect(daemon, name)["NetworkSettings"]
    ip = settings["Networks"]["bridge"]["IPAddress"]
    assert ip
    assert settings["IPAddress"] == ip
    assert ip in _out(_exec(daemon, name, "cat", "/etc/hosts"))
    daemon.moor("stop", "-t", "0", name)
    assert _inspect(daemon, name)["NetworkSettings"]["Networks"]["bridge"]["IPAddress"] == ""


def test_two_running_containers_never_share_an_address(
    daemon: Daemon, cleanup: Callable[[str, str], None]
) -> None:
    ips = set()
    for _ in range(3):
        name = f"uniq-{uuid.uuid4().hex[:6]}"
        cleanup("container", name)
        daemon.moor("run", "-d", "--name", name, "busybox", "sleep", "300")
        ips.add(_inspect(daemon, name)["NetworkSettings"]["IPAddress"])
    assert len(ips) == 3


def test_network_none_has_only_loopback_and_host_sees_the_hosts_interfaces(
    daemon: Daemon,
) -> None:
    none = _out(daemon.moor("run", "--rm", "--network", "none", "busybox", "ip", "-o", "link"))
    assert [line.split(":")[1].strip() for line in none.splitlines()] == ["lo"]
    host = _out(daemon.moor("run", "--rm", "--network", "host", "busybox", "ip", "-o", "link"))
    assert daemon.bridge in host


def test_network_container_mode_shares_the_other_containers_namespace(
    daemon: Daemon, cleanup: Callable[[str, str], None]
) -> None:
    name = _run_httpd(daemon, cleanup)
    out = daemon.moor(
        "run",
        "--rm",
        "--network",
        f"container:{name}",
        "busybox",
        "sh",
        "-c",
        "echo 'GET /index.html HTTP/1.0' | nc 127.0.0.1 80",
    )
    assert "hello-from-" in _out(out)


# --------------------------------------------------------------------------- publishing


def test_published_port_is_reachable_on_localhost_and_the_hosts_addresses(
    daemon: Daemon, cleanup: Callable[[str, str], None]
) -> None:
    port = _free_port()
    name = _run_httpd(daemon, cleanup, "-p", f"{port}:80")
    _await(_serves("127.0.0.1", port), "the published port on 127.0.0.1")
    bridge = json.loads(_out(daemon.moor("network", "inspect", "bridge")))[0]
    gateway = bridge["IPAM"]["Config"][0]["Gateway"]  # another address of this host
    assert "hello-from-" in _http_get(gateway, port)
    assert _out(daemon.moor("port", name)).strip() == f"80/tcp -> 0.0.0.0:{port}"


def test_publish_to_a_free_port_and_publish_all(
    daemon: Daemon, cleanup: Callable[[str, str], None]
) -> None:
    name = _run_httpd(daemon, cleanup, "-p", "127.0.0.1::80", "--expose", "81", "-P")
    ports = _inspect(daemon, name)["NetworkSettings"]["Ports"]
    bound = {b["HostIp"] for b in ports["80/tcp"]}
    assert "127.0.0.1" in bound
    assert ports["81/tcp"]
    assert int(ports["81/tcp"][0]["HostPort"]) > 0
    local = next(b for b in ports["80/tcp"] if b["HostIp"] == "127.0.0.1")
    _await(_serves("127.0.0.1", int(local["HostPort"])), "the port the daemon chose")


def test_a_container_reaches_a_published_port_through_the_hosts_address(
    daemon: Daemon, cleanup: Callable[[str, str], None]
) -> None:
    port = _free_port()
    _run_httpd(daemon, cleanup, "-p", f"{port}:80")
    _await(_serves("127.0.0.1", port), "the published port")
    gateway = json.loads(_out(daemon.moor("network", "inspect", "bridge")))[0]["IPAM"]["Config"][0][
        "Gateway"
    ]
    out = daemon.moor(
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        f"echo 'GET /index.html HTTP/1.0' | nc {gateway} {port}",
    )
    assert "hello-from-" in _out(out)


@pytest.fixture
def remote_host() -> Iterator[tuple[str, str]]:
    """Another machine: a network namespace joined to this host by a veth pair and
    routed through it. Yields (netns name, this host's address as it sees it)."""
    tag = uuid.uuid4().hex[:6]
    ns, host_if = f"mtst-{tag}", f"mth{tag}"
    octet = int(tag[:2], 16)
    host_ip, remote_ip = f"10.253.{octet}.1", f"10.253.{octet}.2"
    commands = [
        ["ip", "netns", "add", ns],
        ["ip", "link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", ns],
        ["ip", "addr", "add", f"{host_ip}/30", "dev", host_if],
        ["ip", "link", "set", host_if, "up"],
        ["ip", "-n", ns, "addr", "add", f"{remote_ip}/30", "dev", "eth0"],
        ["ip", "-n", ns, "link", "set", "eth0", "up"],
        ["ip", "-n", ns, "link", "set", "lo", "up"],
        ["ip", "-n", ns, "route", "add", "default", "via", host_ip],
    ]
    try:
        for command in commands:
            subprocess.run(command, check=True, capture_output=True)
        yield ns, host_ip
    finally:
        subprocess.run(["ip", "link", "del", host_if], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


def _get_from(ns: str, host: str, port: int) -> str:
    code = (
        "import socket,sys\n"
        f"s=socket.create_connection(({host!r},{port}),timeout=3)\n"
        "s.sendall(b'GET /index.html HTTP/1.0\\r\\n\\r\\n')\n"
        "d=b''\n"
        "while c:=s.recv(65536): d+=c\n"
        "sys.stdout.write(d.decode())\n"
    )
    result = subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-c", code], capture_output=True, timeout=30
    )
    return result.stdout.decode()


def test_another_machine_reaches_a_published_port_but_not_the_container_itself(
    daemon: Daemon, cleanup: Callable[[str, str], None], remote_host: tuple[str, str]
) -> None:
    ns, host_ip = remote_host
    port = _free_port()
    name = _run_httpd(daemon, cleanup, "-p", f"{port}:80")
    _await(_serves("127.0.0.1", port), "the published port")
    assert "hello-from-" in _get_from(ns, host_ip, port)
    # Not by the container's own address: only what is published is reachable.
    container_ip = _inspect(daemon, name)["NetworkSettings"]["IPAddress"]
    subprocess.run(["ip", "-n", ns, "route", "add", container_ip, "via", host_ip], check=True)
    assert "hello-from-" not in _get_from(ns, container_ip, 80)


# --------------------------------------------------------------------------- user networks


def _network(daemon: Daemon, cleanup: Callable[[str, str], None], *args: str) -> str:
    name = f"net-{uuid.uuid4().hex[:6]}"
    cleanup("network", name)
    daemon.moor("network", "create", *args, name)
    return name


def test_containers_on_a_user_network_resolve_each_other_by_name_and_alias(
    daemon: Daemon, cleanup: Callable[[str, str], None]
) -> None:
    net = _network(daemon, cleanup)
    server = _run_httpd(daemon, cleanup, "--network", net, "--network-alias", "web-alias")
    for target in (server, "web-alias"):
        out = daemon.moor(
            "run",
            "--rm",
            "--network",
            net,
            "busybox",
            "sh",
            "-c",
            f"echo 'GET /index.html HTTP/1.0' | nc {target} 80",
        )
        assert "hello-from-" in _out(out), target
    resolv = _out(
        daemon.moor("run", "--rm", "--network", net, "busybox", "cat", "/etc/resolv.conf")
    )
    gateway = json.loads(_out(daemon.moor("network", "inspect", net)))[0]["IPAM"]["Config"][0][
        "Gateway"
    ]
    assert f"nameserver {gateway}" in resolv


def test_containers_on_different_networks_cannot_reach_each_other(
    daemon: Daemon, cleanup: Callable[[str, str], None]
) -> None:
    a, b = _network(daemon, cleanup), _network(daemon, cleanup)
    server = _run_httpd(daemon, cleanup, "--network", a)
    ip = _inspect(daemon, server)["NetworkSettings"]["Networks"][a]["IPAddress"]
    same = daemon.moor(
        "run",
        "--rm",
        "--network",
        a,
        "busybox",
        "sh",
        "-c",
        f"echo 'GET /index.html HTTP/1.0' | nc -w 2 {ip} 80",
    )
    assert "hello-from-" in _out(same)
    other = daemon.moor(
        "run",
        "--rm",
        "--network",
        b,
        "busybox",
        "sh",
        "-c",
        f"echo 'GET /index.html HTTP/1.0' | nc -w 2 {ip} 80",
        check=False,
    )
    assert "hello-from-" not in _out(other)
    # Nor by name: the other network's DNS does not know it.
    lookup = daemon.moor("run", "--rm", "--network", b, "busybox", "nslookup", server, check=False)
    assert ip not in _out(lookup)


def test_an_internal_network_has_no_route_out(
    daemon: Daemon, cleanup: Callable[[str, str], None]
) -> None:
    net = _network(daemon, cleanup, "--internal")
    out = _out(daemon.moor("run", "--rm", "--network", net, "busybox", "ip", "route"))
    assert "default" not in out
    bridge_gateway = json.loads(_out(daemon.moor("network", "inspect", "bridge")))[0]["IPAM"][
        "Config"
    ][0]["Gateway"]
    ping = daemon.moor(
        "run",
        "--rm",
        "--network",
        net,
        "busybox",
        "ping",
        "-c",
        "1",
        "-W",
        "1",
        bridge_gateway,
        check=False,
    )
    assert ping.returncode != 0


def test_connect_and_disconnect_a_running_container(
    daemon: Daemon, cleanup: Callable[[str, str], None]
) -> None:
    net = _network(daemon, cleanup)
    name = f"conn-{uuid.uuid4().hex[:6]}"
    cleanup("container", name)
    daemon.moor("run", "-d", "--name", name, "busybox", "sleep", "300")
    daemon.moor("network", "connect", "--alias", "extra", net, name)
    assert "eth1" in _out(_exec(daemon, name, "ip", "-o", "link"))
    networks = _inspect(daemon, name)["NetworkSettings"]["Networks"]
    assert set(networks) == {"bridge", net}
    assert networks[net]["IPAddress"]
    members = json.loads(_out(daemon.moor("network", "inspect", net)))[0]["Containers"]
    assert [m["Name"] for m in members.values()] == [name]
    daemon.moor("network", "disconnect", net, name)
    assert "eth1" not in _out(_exec(daemon, name, "ip", "-o", "link"))
    assert set(_inspect(daemon, name)["NetworkSettings"]["Networks"]) == {"bridge"}


def test_a_created_container_reconnected_with_aliases_starts_on_its_network(
    daemon: Daemon, cleanup: Callable[[str, str], None]
) -> None:
    # What docker-compose does to every container it creates: disconnect it from the
    # network it was created on, connect it again with aliases, then start it.
    net = _network(daemon, cleanup)
    name, peer = f"recon-{uuid.uuid4().hex[:6]}", f"peer-{uuid.uuid4().hex[:6]}"
    cleanup("container", name)
    cleanup("container", peer)
    daemon.moor("create", "--name", name, "--network", net, "busybox", "sleep", "300")
    daemon.moor("network", "disconnect", net, name)
    assert _inspect(daemon, name)["NetworkSettings"]["Networks"] == {}
    assert _inspect(daemon, name)["HostConfig"]["NetworkMode"] == net
    daemon.moor("network", "connect", "--alias", "svc", net, name)
    daemon.moor("start", name)
    networks = _inspect(daemon, name)["NetworkSettings"]["Networks"]
    assert set(networks) == {net}
    assert networks[net]["IPAddress"]
    daemon.moor("run", "-d", "--name", peer, "--network", net, "busybox", "sleep", "300")
    assert _exec(daemon, peer, "ping", "-c", "1", "-W", "5", "svc").returncode == 0


def test_a_container_disconnected_from_every_network_starts_with_loopback_only(
    daemon: Daemon, cleanup: Callable[[str, str], None]
) -> None:
    net = _network(daemon, cleanup)
    name = f"alone-{uuid.uuid4().hex[:6]}"
    cleanup("container", name)
    daemon.moor("create", "--name", name, "--network", net, "busybox", "sleep", "300")
    daemon.moor("network", "disconnect", net, name)
    daemon.moor("start", name)
    links = _out(_exec(daemon, name, "ip", "-o", "link"))
    assert ": lo:" in links
    assert "eth0" not in links
    assert _inspect(daemon, name)["NetworkSettings"]["Networks"] == {}


def test_network_ls_inspect_rm_and_prune(
    daemon: Daemon, cleanup: Callable[[str, str], None]
) -> None:
    net = _network(daemon, cleanup, "--subnet", "10.231.7.0/24", "--label", "team=a")
    listed = _out(daemon.moor("network", "ls", "--format", "{{.Name}} {{.Driver}}"))
    assert {"bridge bridge", "host host", "none null", f"{net} bridge"} <= set(listed.splitlines())
    info = json.loads(_out(daemon.moor("network", "inspect", net)))[0]
    assert info["IPAM"]["Config"] == [{"Subnet": "10.231.7.0/24", "Gateway": "10.231.7.1"}]
    assert info["Labels"] == {"team": "a"}
    pruned = _out(daemon.moor("network", "prune", "-f", "--filter", "label=team=a"))
    assert net in pruned
    assert daemon.moor("network", "inspect", net, check=False).returncode == 1


# --------------------------------------------------------------------------- bad input


def test_bad_network_input_gets_clear_errors(
    daemon: Daemon, cleanup: Callable[[str, str], None]
) -> None:
    net = _network(daemon, cleanup, "--subnet", "10.232.0.0/16")
    overlap = daemon.moor(
        "network", "create", "--subnet", "10.232.5.0/24", "x-overlap", check=False
    )
    assert overlap.returncode != 0
    assert b"overlaps" in overlap.stderr
    bad = daemon.moor("network", "create", "--subnet", "10.0.0.0/33", "x-bad", check=False)
    assert bad.returncode != 0
    assert b"10.0.0.0/33" in bad.stderr
    dup = daemon.moor("network", "create", net, check=False)
    assert dup.returncode != 0
    assert b"already exists" in dup.stderr
    missing = daemon.moor("run", "--rm", "--network", "no-such-net", "busybox", "true", check=False)
    assert missing.returncode == 125
    assert b"no-such-net" in missing.stderr
    box = f"box-{uuid.uuid4().hex[:6]}"
    cleanup("container", box)
    daemon.moor("create", "--name", box, "busybox", "true")
    connect = daemon.moor("network", "connect", "no-such-net", box, check=False)
    assert connect.returncode != 0
    assert b"network no-such-net not found" in connect.stderr
    builtin = daemon.moor("network", "rm", "bridge", check=False)
    assert builtin.returncode != 0
    assert b"pre-defined" in builtin.stderr
    names = _out(daemon.moor("network", "ls", "--format", "{{.Name}}")).split()
    assert "x-overlap" not in names
    assert "x-bad" not in names


def test_a_network_in_use_cannot_be_removed(
    daemon: Daemon, cleanup: Callable[[str, str], None]
) -> None:
    net = _network(daemon, cleanup)
    name = f"user-{uuid.uuid4().hex[:6]}"
    cleanup("container", name)
    daemon.moor("run", "-d", "--name", name, "--network", net, "busybox", "sleep", "300")
    result = daemon.moor("network", "rm", net, check=False)
    assert result.returncode != 0
    assert b"active endpoints" in result.stderr


def test_a_host_port_in_use_fails_the_start_and_leaves_nothing(
    daemon: Daemon, cleanup: Callable[[str, str], None]
) -> None:
    with socket.socket() as holder:
        holder.bind(("0.0.0.0", 0))
        holder.listen()
        port = holder.getsockname()[1]
        name = f"busy-{uuid.uuid4().hex[:6]}"
        cleanup("container", name)
        result = daemon.moor(
            "run", "-d", "--name", name, "-p", f"{port}:80", "busybox", "sleep", "300", check=False
        )
    assert result.returncode != 0
    assert b"already allocated" in result.stderr
    state = _inspect(daemon, name)
    assert not state["State"]["Running"]
    assert state["NetworkSettings"]["Networks"]["bridge"]["IPAddress"] == ""


def test_an_invalid_port_spec_is_refused(daemon: Daemon) -> None:
    result = daemon.moor("run", "--rm", "-p", "99999:80", "busybox", "true", check=False)
    assert result.returncode == 125
    assert b"99999" in result.stderr


# --------------------------------------------------------------------------- crash


def test_after_kill_9_the_daemon_keeps_addresses_and_rules(tmp_path: Path) -> None:
    with running_daemon(tmp_path / "moor", busybox=True) as d:
        port = _free_port()
        d.moor("run", "-d", "--name", "keep", "-p", f"{port}:80", "busybox", "sh", "-c", HTTPD)
        _await(_serves("127.0.0.1", port), "the published port")
        ip = _inspect(d, "keep")["NetworkSettings"]["IPAddress"]
        d.kill()
        d.start()
        assert _inspect(d, "keep")["NetworkSettings"]["IPAddress"] == ip
        assert "hello-from-" in _http_get("127.0.0.1", port)
        d.moor("run", "-d", "--name", "new", "busybox", "sleep", "300")
        assert _inspect(d, "new")["NetworkSettings"]["IPAddress"] != ip
        d.moor("rm", "-f", "keep")
        with pytest.raises(ConnectionRefusedError):
            _http_get("127.0.0.1", port, timeout=1.0)
        rules = subprocess.run(
            ["nft", "list", "table", "ip", f"moorage_{d.bridge}"], capture_output=True, text=True
        ).stdout
        assert str(port) not in rules


_UDP_ECHO = (
    "import socket\n"
    "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
    "s.bind(('0.0.0.0', 5000))\n"
    "print('ready', flush=True)\n"
    "while True:\n"
    "    data, peer = s.recvfrom(2048)\n"
    "    s.sendto(b'echo:' + data, peer)\n"
)


def test_a_published_udp_port_reaches_the_container(
    daemon: Daemon, cleanup: Callable[[str, str], None]
) -> None:
    name = f"udp-{uuid.uuid4().hex[:6]}"
    cleanup("container", name)
    daemon.moor("run", "-d", "--name", name, "-p", "127.0.0.1::5000/udp", "busybox", "sleep", "300")
    info = _inspect(daemon, name)
    port = int(info["NetworkSettings"]["Ports"]["5000/udp"][0]["HostPort"])
    # busybox has no UDP server: run one in the container's network namespace.
    netns = f"--net=/proc/{info['State']['Pid']}/ns/net"
    server = subprocess.Popen(
        ["nsenter", netns, sys.executable, "-c", _UDP_ECHO], stdout=subprocess.PIPE
    )
    try:
        assert server.stdout is not None
        assert server.stdout.readline() == b"ready\n"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.settimeout(2)
            client.sendto(b"ping", ("127.0.0.1", port))
            assert client.recv(2048) == b"echo:ping"
    finally:
        server.kill()
        server.wait()
        if server.stdout is not None:
            server.stdout.close()


def test_port_ranges_are_published_port_by_port(
    daemon: Daemon, cleanup: Callable[[str, str], None]
) -> None:
    first = _free_port()
    while first + 1 > 65535 or not _is_free(first + 1):
        first = _free_port()
    name = f"range-{uuid.uuid4().hex[:6]}"
    cleanup("container", name)
    daemon.moor(
        "run", "-d", "--name", name, "-p", f"{first}-{first + 1}:80-81", "busybox", "sleep", "300"
    )
    lines = _out(daemon.moor("port", name)).splitlines()
    assert lines == [f"80/tcp -> 0.0.0.0:{first}", f"81/tcp -> 0.0.0.0:{first + 1}"]


def _is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def test_a_container_that_exits_while_the_daemon_is_down_leaves_nothing(tmp_path: Path) -> None:
    with running_daemon(tmp_path / "moor", busybox=True) as d:
        d.moor("network", "create", "crashnet")
        port = _free_port()
        d.moor(
            "run",
            "-d",
            "--name",
            "brief",
            "--network",
            "crashnet",
            "-p",
            f"{port}:80",
            "busybox",
            "sleep",
            "300",
        )
        pid = _inspect(d, "brief")["State"]["Pid"]
        d.kill()
        subprocess.run(["kill", "-9", str(pid)], check=True)
        d.start()
        _await(lambda: not _inspect(d, "brief")["State"]["Running"], "the exit to be recorded")
        members = json.loads(_out(d.moor("network", "inspect", "crashnet")))[0]["Containers"]
        assert members == {}
        rules = subprocess.run(
            ["nft", "list", "table", "ip", f"moorage_{d.bridge}"], capture_output=True, text=True
        ).stdout
        assert f"dport {port}" not in rules
        lookup = d.moor(
            "run", "--rm", "--network", "crashnet", "busybox", "nslookup", "brief", check=False
        )
        assert lookup.returncode != 0
        d.moor("rm", "brief")
        d.moor("network", "rm", "crashnet")


@pytest.fixture
def upstream_dns() -> Iterator[str]:
    """A resolver on a loopback address of this host that knows one name: what the
    daemon's ``--dns`` names, standing in for the host's resolvers."""
    import asyncio
    import threading

    from moorage.engine.network.dns import DnsServer, Records

    records = Records()
    records.add(["external.test"], ipaddress.IPv4Address("10.1.2.3"), "upstream")
    server = DnsServer(records, forward=False)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    address = "127.0.0.77"
    asyncio.run_coroutine_threadsafe(server.start(address, 53), loop).result(10)
    try:
        yield address
    finally:
        asyncio.run_coroutine_threadsafe(server.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_the_embedded_dns_forwards_other_names_upstream(tmp_path: Path, upstream_dns: str) -> None:
    d = Daemon(tmp_path / "moor")
    d.extra_args = ("--dns", upstream_dns)
    d.base.mkdir()
    try:
        d.start()
        d.moor("bootstrap", "busybox")
        d.moor("network", "create", "fwd")
        out = d.moor("run", "--rm", "--network", "fwd", "busybox", "nslookup", "external.test")
        assert "10.1.2.3" in _out(out)
        d.moor("network", "rm", "fwd")
    finally:
        d.cleanup()
