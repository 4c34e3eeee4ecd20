"""Container networking beside docker's bridge (issue 5): throughput and latency.

One run measures both engines through their command lines, interleaved: Moorage (a
private `moor daemon`, as bench/run.py starts it, with its own default bridge and
nftables table) and Debian's dockerd (a private instance with iptables on, its own
default bridge made here, `--ip-forward=false` so that it never touches the FORWARD
policy). dockerd runs twice, one phase each: with its default `--userland-proxy=true`
(localhost goes through docker-proxy; column "docker") and with
`--userland-proxy=false` (kernel DNAT and route_localnet, like Moorage; "docker-nat").
Moorage runs through both phases, interleaved with each, and each ratio compares the
runs of one phase (the load of the machine may change from one phase to the next).
Only one dockerd with iptables runs at a time: each rebuilds the DOCKER chains as it
starts.

Both engines get the same image (`moor import`, `docker import` of one tar): the
busybox-static root filesystem, /usr/bin/iperf3 with the libraries `ldd` lists, and a
static `tcprr` built here from bench/tcprr.c. On each engine, one user-defined bridge
network (subnets chosen here, unused on the host) holds a server container (iperf3 -s
and `tcprr server`, both ports published) and a client container. The paths:

- container -> container: the client container to the server's address (exec).
- host -> 127.0.0.1:published port: the localhost path (route_localnet, or docker-proxy).
- host -> host address:published port: the kernel-forwarded path, to the first global
  IPv4 address of an interface of this host that is neither a bridge nor a veth (a
  dummy interface made for the run when there is none). The traffic stays in the host.

and on each: iperf3 throughput (`-t SECONDS`, Gbit/s received: the median, and the
best run, which other load on the machine only lowers), and tcprr latency:
median and p99 of COUNT round trips of a small message on one connection, and of
round trips with a connection each (connect, send, receive, close).

Clients and servers are pinned (`--no-pin` lets the scheduler place them): tcprr's
client and server on one CPU, iperf3's client on that CPU and its server on another.
On a small VM a wake-up across CPUs costs more than the whole network path (a loopback
round trip measured 12 us on one CPU, 54 us across two), and where the scheduler puts
the two ends changes from run to run: unpinned, the latencies jump between the two
figures and hide the engines' differences. docker-proxy is not pinned: a userland
proxy's hops are part of what is measured.

The goals (issue 5): throughput at least 0.9x docker's on kernel-forwarded paths, and
better latency than docker's on the localhost path. Never asserts on time.

While both engines run, each one's packets also cross the other's hooks (the moor table,
docker's iptables chains): both sides pay for both. Everything the bench starts is
removed at the end, on failure and Ctrl-C too: containers, networks, daemons, docker's
rules and chains (those that jump to DOCKER* chains or name this run's bridges or
subnets, then the DOCKER* chains, then the iptables-nft tables docker made if they are
left empty), the bridges and the dummy interface. `iptables -S`, `iptables -t nat -S`,
`nft list tables`, the interfaces and a few sysctls are compared with what they were at
the start, with a warning for any difference.

    .venv/bin/python bench/net.py [--seconds 2] [--rounds 5] [--count 5000]
                                  [--conn-count 1000] [--size 1] [--no-pin]
                                  [--host-ip ADDR] [--skip-docker] [--skip-moor] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import ipaddress
import json
import os
import random
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH), str(BENCH.parent / "tests")]

from run import (  # noqa: E402
    BenchError,
    DockerSide,
    MoorDaemon,
    MoorSide,
    PrivateDockerDaemon,
    kill_trees,
    log,
    print_table,
    process_table,
    signals_raise,
)

import dockerd  # noqa: E402
from bundles import make_busybox_rootfs  # noqa: E402

IMAGE = "moorage-bench-net:latest"
IPERF_PORT = 5201
RR_PORT = 7000
IPERF3 = "/usr/bin/iperf3"
DOCKER_PROXY = "/usr/sbin/docker-proxy"
# Where this run's subnets come from: /24s unused by any route of the host.
SUBNET_SPACE = ipaddress.IPv4Network("10.254.0.0/16")
SYSCTLS = (
    "net.ipv4.ip_forward",
    "net.ipv4.conf.all.route_localnet",
    "net.bridge.bridge-nf-call-iptables",
    "net.bridge.bridge-nf-call-ip6tables",
)
IPTABLES_TABLES = ("filter", "nat", "mangle", "raw", "security")

PATHS = ("c2c", "localhost", "hostip")
TOOLS = ("iperf3", "rr", "conn")
SIDES = ("moor", "docker", "docker-nat")


# --------------------------------------------------------------------------- host


def run(argv: list[str], timeout: float = 60.0, check: bool = True) -> str:
    """A host command's stdout; BenchError with its stderr when it fails."""
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise BenchError(f"{' '.join(argv)}: no answer within {timeout:.0f}s") from None
    if check and result.returncode != 0:
        raise BenchError(f"{' '.join(argv)}: exit {result.returncode}: {result.stderr.strip()}")
    return result.stdout


def quiet(argv: list[str]) -> None:
    """A cleanup command: its failure (already gone) is not an error."""
    subprocess.run(argv, capture_output=True, timeout=60, check=False)


def iptables_lines(table: str) -> list[str]:
    return run(["iptables", "-t", table, "-S"]).splitlines()


def nft_tables() -> list[str]:
    return sorted(run(["nft", "list", "tables"]).splitlines())


def links() -> dict[str, str]:
    """Interface name -> the bridge it is a port of ("" if none)."""
    return {
        link["ifname"]: link.get("master", "") for link in json.loads(run(["ip", "-j", "link"]))
    }


def read_sysctl(name: str) -> str | None:
    try:
        return Path("/proc/sys", *name.split(".")).read_text().strip()
    except OSError:
        return None


def write_sysctl(name: str, value: str) -> None:
    with contextlib.suppress(OSError):
        Path("/proc/sys", *name.split(".")).write_text(value)


@dataclass(frozen=True)
class HostState:
    """What the bench may change on the host, as the commands print it."""

    filter: list[str]
    nat: list[str]
    tables: list[str]
    links: dict[str, str]
    sysctls: dict[str, str | None]

    @classmethod
    def capture(cls) -> HostState:
        return cls(
            filter=iptables_lines("filter"),
            nat=iptables_lines("nat"),
            tables=nft_tables(),
            links=links(),
            sysctls={name: read_sysctl(name) for name in SYSCTLS},
        )

    def differences(self, now: HostState, ours: set[str]) -> list[tuple[str, bool]]:
        """What differs, each with whether this run may have left it: iptables rules,
        sysctls, the interfaces and nftables tables in ``ours`` and any other interface
        but another daemon's bridges and their ports (tests running meanwhile make and
        remove those)."""
        out: list[tuple[str, bool]] = []
        for what, before, after in (
            ("iptables -S", self.filter, now.filter),
            ("iptables -t nat -S", self.nat, now.nat),
        ):
            added = [line for line in after if line not in before]
            gone = [line for line in before if line not in after]
            if added or gone:
                out.append((f"{what}: added {added}, gone {gone}", True))
        for line in sorted(set(now.tables) - set(self.tables)):
            out.append((f"nft list tables: added {line}", line in ours))
        for line in sorted(set(self.tables) - set(now.tables)):
            out.append((f"nft list tables: gone {line}", False))
        for name in sorted(now.links.keys() - self.links.keys()):
            master = now.links[name]
            if master:
                mine = master in ours or name in ours
            else:
                mine = name in ours or not name.startswith(("mt", "mbr-"))
            out.append((f"interface added: {name}" + (f" (on {master})" if master else ""), mine))
        for name in sorted(self.links.keys() - now.links.keys()):
            out.append((f"interface gone: {name}", False))
        for name, value in self.sysctls.items():
            if now.sysctls.get(name) != value:
                out.append((f"sysctl {name}: {value} -> {now.sysctls.get(name)}", True))
        return out


def routes() -> list[ipaddress.IPv4Network]:
    out = []
    for route in json.loads(run(["ip", "-j", "-4", "route", "show", "table", "all"])):
        dst = route.get("dst", "")
        if dst and dst != "default":
            with contextlib.suppress(ValueError):
                out.append(ipaddress.IPv4Network(dst, strict=False))
    return out


def free_subnets(count: int) -> list[ipaddress.IPv4Network]:
    """``count`` /24s of SUBNET_SPACE that no route of the host overlaps."""
    taken = [r for r in routes() if r.prefixlen > 0]
    candidates = [
        s for s in SUBNET_SPACE.subnets(new_prefix=24) if not any(s.overlaps(r) for r in taken)
    ]
    if len(candidates) < count:
        raise BenchError(f"no {count} free /24s in {SUBNET_SPACE} for the bench's networks")
    return random.sample(candidates, count)


def free_ports(count: int) -> list[int]:
    """Host ports nothing listens on now (published by one engine each)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("0.0.0.0", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def host_address() -> str | None:
    """The first global IPv4 address of an interface that is not loopback, a bridge
    or a veth (traffic to it stays in the host, as to any local address)."""
    for link in json.loads(run(["ip", "-j", "-d", "-4", "addr"])):
        kind = link.get("linkinfo", {}).get("info_kind")
        if "LOOPBACK" in link.get("flags", []) or kind in ("bridge", "veth", "bridge_slave"):
            continue
        for addr in link.get("addr_info", []):
            if addr.get("scope") == "global" and addr.get("family", "inet") == "inet":
                return str(addr["local"])
    return None


def make_bridge(name: str, subnet: ipaddress.IPv4Network) -> None:
    gateway = next(subnet.hosts())
    run(["ip", "link", "add", name, "type", "bridge"])
    run(["ip", "addr", "add", f"{gateway}/{subnet.prefixlen}", "dev", name])
    run(["ip", "link", "set", name, "up"])


def remove_docker_rules(bridges: set[str], subnets: set[str]) -> None:
    """docker's iptables rules and chains, and nothing else: in the built-in chains, the
    rules that jump to a DOCKER* chain or name one of this run's bridges or subnets; then
    every DOCKER* chain (flushed first: they jump to each other)."""
    for table in ("filter", "nat"):
        lines = iptables_lines(table)
        chains = [line.split()[1] for line in lines if line.startswith("-N DOCKER")]
        for line in lines:
            if not line.startswith("-A "):
                continue
            args = shlex.split(line)
            chain = args[1]
            if chain.startswith("DOCKER"):
                continue  # goes with its chain
            target = args[args.index("-j") + 1] if "-j" in args else ""
            if (
                target.startswith("DOCKER")
                or bridges.intersection(args)
                or subnets.intersection(args)
            ):
                quiet(["iptables", "-t", table, "-D", chain, *args[2:]])
        for chain in chains:
            quiet(["iptables", "-t", table, "-F", chain])
        for chain in chains:
            quiet(["iptables", "-t", table, "-X", chain])


def remove_empty_tables(before: list[str]) -> None:
    """The iptables-nft tables (``table ip filter``...) that were not there at the start
    and hold no rule now: iptables made them for docker's rules, which are gone."""
    for line in nft_tables():
        parts = line.split()
        if line in before or len(parts) != 3 or parts[2] not in IPTABLES_TABLES:
            continue
        family, name = parts[1], parts[2]
        if family not in ("ip", "ip6"):
            continue
        listing = json.loads(run(["nft", "-j", "list", "table", family, name]))
        if not any("rule" in item for item in listing.get("nftables", [])):
            quiet(["nft", "delete", "table", family, name])


# --------------------------------------------------------------------------- the image


def build_tcprr(work: Path) -> Path:
    out = work / "tcprr"
    run(["gcc", "-O2", "-static", "-o", str(out), str(BENCH / "tcprr.c")], timeout=120)
    return out


def shared_libraries(binary: str) -> list[str]:
    """The files ``ldd`` lists for ``binary`` (the dynamic loader included)."""
    paths = []
    for line in run(["ldd", binary]).splitlines():
        words = line.split()
        if "=>" in words:
            words = words[words.index("=>") + 1 :]
        if words and words[0].startswith("/"):
            paths.append(words[0])
    return paths


def build_image_tar(work: Path, tcprr: Path) -> Path:
    """busybox + iperf3 (with its libraries at the same paths) + tcprr, as a tar."""
    rootfs = work / "rootfs"
    make_busybox_rootfs(rootfs)
    for path in [IPERF3, *shared_libraries(IPERF3)]:
        target = rootfs / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)  # the file a symlink names, at the symlink's path
    (rootfs / "usr/bin").mkdir(parents=True, exist_ok=True)
    shutil.copy(tcprr, rootfs / "usr/bin/tcprr")
    out = work / "image.tar"
    with tarfile.open(out, "w") as tar:
        for entry in sorted(rootfs.iterdir()):
            tar.add(entry, arcname=entry.name)
    return out


# --------------------------------------------------------------------------- the sides


@dataclass(frozen=True)
class Plan:
    """Names, addresses and sizes of one run."""

    tag: str
    network: str
    server: str
    client: str
    docker_bridge: str
    docker_net_bridge: str
    host_ip: str
    tcprr: Path
    seconds: int
    count: int
    conn_count: int
    size: int
    cpus: tuple[int, int] | None
    """(tcprr's client and server and iperf3's client, iperf3's server), or unpinned."""


@dataclass
class Endpoints:
    """One engine's network, servers and client, as the measures reach them."""

    network_bridge: str = ""
    server_ip: str = ""
    iperf_port: int = 0  # published on the host
    rr_port: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # path -> why it does not work
    errors: list[str] = field(default_factory=list)  # "path.tool: message" of failed runs


class MoorNet(MoorSide):
    """bench/run.py's moor side, with a network, a server and a client (which its
    stop() removes, and Daemon.cleanup() the network's bridge and nftables table)."""

    def __init__(self) -> None:
        super().__init__("moor")
        self.ends = Endpoints()

    def start(self, work: Path, rootfs_tar: Path) -> None:
        self.daemon = MoorDaemon(work / "moor")
        self.daemon.base.mkdir()
        log(f"moor: starting a private daemon (root {self.daemon.root})")
        self.daemon.start()
        self.moor_cli("import", "-c", 'CMD ["sh"]', str(rootfs_tar), IMAGE)

    def names(self) -> set[str]:
        """This daemon's bridges and nftables table."""
        if self.daemon is None:
            return set()
        bridge = self.daemon.bridge
        return {bridge, f"table ip moorage_{bridge}", self.ends.network_bridge} - {""}


class DockerNet(DockerSide):
    """bench/run.py's docker side, with iptables, a default bridge of the bench's own,
    and one phase per userland-proxy setting (a dockerd each, on one data root)."""

    def __init__(self, work: Path, bridge: str, bridge_subnet: ipaddress.IPv4Network) -> None:
        super().__init__()
        self.daemon = PrivateDockerDaemon(work / "dockerd")
        self.bridge = bridge
        self.bridge_subnet = bridge_subnet
        # What remove_host_state() deletes the rules of, and the bridges.
        self.subnets = {str(bridge_subnet)}
        self.bridges = {bridge}
        self.ends = Endpoints()
        self.network = ""

    def start_phase(self, proxy: bool, rootfs_tar: Path) -> None:
        """dockerd with ``--userland-proxy=<proxy>``; the image imported once."""
        assert self.daemon is not None
        self.name = "docker" if proxy else "docker-nat"
        make_bridge(self.bridge, self.bridge_subnet)
        self.daemon.options = [
            "--iptables=true",
            "--ip6tables=false",
            "--ip-forward=false",  # Moorage has turned it on; so no FORWARD policy change
            f"--bridge={self.bridge}",
            f"--userland-proxy={'true' if proxy else 'false'}",
            f"--userland-proxy-path={DOCKER_PROXY}",
        ]
        log(f"{self.name}: starting a private dockerd ({' '.join(self.daemon.options)})")
        self.daemon.start()
        if self.cli("image", "inspect", IMAGE, check=False).returncode != 0:
            self.cli("import", "-c", 'CMD ["sh"]', str(rootfs_tar), IMAGE)

    def end_phase(self) -> None:
        """Containers, network and daemon gone (its data root stays), then docker's
        rules and chains and the bridges."""
        if self.daemon is not None and self.daemon.proc is not None:
            if self.daemon.proc.poll() is None:
                with contextlib.suppress(BenchError, subprocess.TimeoutExpired):
                    self.remove_all()
                    if self.network:
                        self.cli("network", "rm", self.network, check=False)
            self.daemon.stop_daemon_only()
            table = process_table()
            alive = self.helpers(table)
            if alive:
                log(f"{self.name}: killing {len(alive)} shim(s) and proxies left behind")
                kill_trees(alive, table)
        self.remove_host_state()
        self.ends = Endpoints()

    def remove_host_state(self) -> None:
        remove_docker_rules(self.bridges, self.subnets)
        present = links()
        for name in sorted(self.bridges & present.keys()):
            quiet(["ip", "link", "del", name])

    def helpers(self, table: dict[int, tuple[int, str]]) -> set[int]:
        """The shims, and the docker-proxy processes that serve this run's containers."""
        nets = [ipaddress.IPv4Network(s) for s in self.subnets]
        proxies = set()
        for pid, (_, cmd) in table.items():
            argv = cmd.split()
            if argv and os.path.basename(argv[0]) == "docker-proxy" and "-container-ip" in argv:
                with contextlib.suppress(ValueError, IndexError):
                    ip = ipaddress.IPv4Address(argv[argv.index("-container-ip") + 1])
                    if any(ip in net for net in nets):
                        proxies.add(pid)
        return super().helpers(table) | proxies

    def stop(self) -> None:
        if self.daemon is None:
            return
        self.end_phase()
        self.daemon.stop()  # and its directories
        self.daemon = None


Side = MoorNet | DockerNet


def set_up(side: Side, plan: Plan, subnet: ipaddress.IPv4Network, ports: tuple[int, int]) -> None:
    """The network, the server (its ports published) and the client, on ``side``."""
    create = ["network", "create", "--subnet", str(subnet)]
    if isinstance(side, DockerNet):
        side.network = plan.network
        side.subnets.add(str(subnet))
        side.bridges.add(plan.docker_net_bridge)
        create += ["-o", f"com.docker.network.bridge.name={plan.docker_net_bridge}"]
    side.cli(*create, plan.network)
    info = json.loads(side.cli("network", "inspect", plan.network).stdout)[0]
    bridge = (info.get("Options") or {}).get("com.docker.network.bridge.name", "")
    publish = ["-p", f"{ports[0]}:{IPERF_PORT}", "-p", f"{ports[1]}:{RR_PORT}"]
    server = ["--name", plan.server, "--network", plan.network, *publish]
    side.cli("run", "-d", *server, IMAGE, "sh", "-c", server_command(plan))
    side.cli("run", "-d", "--name", plan.client, "--network", plan.network, IMAGE, "sleep", "1d")
    data = json.loads(side.cli("inspect", plan.server).stdout)
    try:
        server_ip = str(data[0]["NetworkSettings"]["Networks"][plan.network]["IPAddress"])
    except (KeyError, IndexError, TypeError):
        raise BenchError(f"{side.name}: no address of {plan.server} on {plan.network}") from None
    side.ends = Endpoints(bridge, server_ip, *ports)


# --------------------------------------------------------------------------- measures


class PathFailed(BenchError):
    """One path of one side does not work; the others are measured anyway."""


def pinned_cpus() -> tuple[int, int]:
    """Two CPUs this process may use (one, twice, on a machine with one)."""
    cpus = sorted(os.sched_getaffinity(0))
    return cpus[0], cpus[1 if len(cpus) > 1 else 0]


def server_command(plan: Plan) -> str:
    iperf3 = f"iperf3 -s -4 -p {IPERF_PORT}"
    tcprr = f"tcprr server {RR_PORT}"
    if plan.cpus is not None:
        iperf3 += f" -A {plan.cpus[1]}"
        tcprr = f"taskset -c {plan.cpus[0]} {tcprr}"
    return f"{iperf3} & exec {tcprr}"


def client_argv(side: Side, plan: Plan, path: str, tool: str) -> list[str]:
    ends = side.ends
    if path == "c2c":
        prefix = side.argv("exec", plan.client)
        iperf3, tcprr = "iperf3", "tcprr"
        host, iperf_port, rr_port = ends.server_ip, IPERF_PORT, RR_PORT
    else:
        prefix, iperf3, tcprr = [], IPERF3, str(plan.tcprr)
        host = "127.0.0.1" if path == "localhost" else plan.host_ip
        iperf_port, rr_port = ends.iperf_port, ends.rr_port
    if tool == "iperf3":
        argv = [*prefix, iperf3, "-4", "-c", host, "-p", str(iperf_port), "-t", str(plan.seconds)]
        return argv + (["-A", str(plan.cpus[0])] if plan.cpus is not None else [])
    mode, count = ("client", plan.count) if tool == "rr" else ("client-conn", plan.conn_count)
    pin = ["taskset", "-c", str(plan.cpus[0])] if plan.cpus is not None else []
    return [*prefix, *pin, tcprr, mode, host, str(rr_port), str(count), str(plan.size)]


def measure(side: Side, plan: Plan, path: str, tool: str) -> dict[str, float]:
    """One run of ``tool`` on ``path``: {"gbps"} or tcprr's {"median_us", "p99_us"...}."""
    argv = client_argv(side, plan, path, tool)
    if tool == "iperf3":
        argv.append("-J")
    for attempt in range(3):
        try:
            result = subprocess.run(
                argv, capture_output=True, text=True, timeout=plan.seconds + 60, check=False
            )
        except subprocess.TimeoutExpired:
            raise PathFailed(f"{' '.join(argv)}: no answer within {plan.seconds + 60}s") from None
        try:
            data = json.loads(result.stdout)
        except ValueError:
            data = {}
        if result.returncode == 0 and data:
            if tool != "iperf3":
                return {k: float(v) for k, v in data.items() if k.endswith("_us")}
            return {"gbps": data["end"]["sum_received"]["bits_per_second"] / 1e9}
        error = data.get("error") or (result.stderr or result.stdout).strip()[-500:]
        # iperf3's server takes one test at a time and may still be closing the last.
        if "busy" not in str(error) or attempt == 2:
            raise PathFailed(f"{' '.join(argv)}: exit {result.returncode}: {error}")
        time.sleep(1)
    raise AssertionError("unreachable")


def preflight(side: Side, plan: Plan) -> None:
    """A short tcprr on every path (the servers may still be starting): a path that does
    not answer within 20 s is marked failed for this side and not measured."""
    quick = dataclasses.replace(plan, count=20, conn_count=20)
    for path in PATHS:
        deadline = time.monotonic() + 20
        while True:
            try:
                measure(side, quick, path, "conn")
                measure(side, quick, path, "rr")
                break
            except PathFailed as exc:
                if time.monotonic() > deadline:
                    side.ends.failed[path] = str(exc)
                    log(f"{side.name}: {path} does not work: {exc}")
                    break
                time.sleep(0.5)


# phase -> side -> "path.tool" -> runs (or stat -> median); a phase is named for the
# docker side it runs (docker, docker-nat), or "moor" with --skip-docker.
PhaseSamples = dict[str, dict[str, list[dict[str, float]]]]
Samples = dict[str, PhaseSamples]
Summary = dict[str, dict[str, dict[str, dict[str, float]]]]


def bench_phase(
    sides: list[Side], plan: Plan, rounds: int, samples: PhaseSamples, phase: str
) -> None:
    """``rounds`` rounds; in each, every measure on every side, the order of the sides
    alternating from one round to the next (and from one measure to the next)."""
    for r in range(rounds):
        log(f"  {phase}: round {r + 1}/{rounds}")
        for i, (path, tool) in enumerate((p, t) for p in PATHS for t in TOOLS):
            order = sides if (r + i) % 2 == 0 else sides[::-1]
            for side in order:
                if path in side.ends.failed:
                    continue
                key = f"{path}.{tool}"
                try:
                    value = measure(side, plan, path, tool)
                except PathFailed as exc:
                    # A path that worked in preflight: one failed run is not the end of it.
                    side.ends.errors.append(f"{key}: {exc}")
                    log(f"{side.name}: {key} failed: {exc}")
                    continue
                samples.setdefault(side.name, {}).setdefault(key, []).append(value)


def summarize(samples: Samples) -> Summary:
    """The median of every stat over the runs; and iperf3's best run, what the path
    carries when nothing else on the machine gets in the way."""
    out: Summary = {}
    for phase, sides in samples.items():
        for side, keys in sides.items():
            for key, runs in keys.items():
                stats = {s: statistics.median(r[s] for r in runs) for s in sorted(runs[0])}
                if "gbps" in stats:
                    stats["gbps_best"] = max(r["gbps"] for r in runs)
                out.setdefault(phase, {}).setdefault(side, {})[key] = stats
    return out


# --------------------------------------------------------------------------- report

PATH_LABELS = {
    "c2c": "container -> container",
    "localhost": "host -> 127.0.0.1:port",
    "hostip": "host -> {ip}:port",
}
MEASURE_ROWS: tuple[tuple[str, str, str, str], ...] = (
    # (tool, stat, label, format)
    ("iperf3", "gbps", "iperf3 (Gbit/s)", "{:.2f}"),
    ("iperf3", "gbps_best", "iperf3, best run (Gbit/s)", "{:.2f}"),
    ("rr", "median_us", "tcprr 1 conn, median (us)", "{:.1f}"),
    ("rr", "p99_us", "tcprr 1 conn, p99 (us)", "{:.1f}"),
    ("conn", "median_us", "tcprr conn/request, median (us)", "{:.1f}"),
    ("conn", "p99_us", "tcprr conn/request, p99 (us)", "{:.1f}"),
)


def goal(path: str, tool: str, stat: str) -> str:
    if stat == "gbps" and path in ("c2c", "hostip"):
        return ">= 0.9x"
    if path == "localhost" and tool != "iperf3" and stat == "median_us":
        return "< 1x"
    return ""


Failures = dict[str, dict[str, Any]]  # side -> {"paths": {path: why}, "runs": [errors]}


def report(
    summary: Summary, failures: Failures, host_ip: str
) -> tuple[list[list[str]], dict[str, float | None]]:
    """The table, a group of columns per phase (moor, the docker side, their ratio; a
    value with * had failed runs besides), and the ratios."""
    phases = {phase: [s for s in SIDES if s in sides] for phase, sides in summary.items()}
    header = ["measure"]
    for sides in phases.values():
        header += sides
        header += [f"moor/{s}" for s in sides if "moor" in sides and s != "moor"]
    table = [[*header, "goal"]]
    ratios: dict[str, float | None] = {}
    for path in PATHS:
        for tool, stat, label, fmt in MEASURE_ROWS:
            key = f"{path}.{tool}"
            row = [f"{PATH_LABELS[path].format(ip=host_ip)}: {label}"]
            for phase, sides in phases.items():
                values: dict[str, float | None] = {}
                for side in sides:
                    value = summary[phase][side].get(key, {}).get(stat)
                    values[side] = value
                    failed = failures.get(side, {"paths": {}, "runs": []})
                    if path in failed["paths"]:
                        row.append("failed")
                    elif value is None:
                        row.append("-")
                    else:
                        some = any(e.startswith(f"{key}:") for e in failed["runs"])
                        row.append(fmt.format(value) + ("*" if some else ""))
                for other in (s for s in sides if "moor" in sides and s != "moor"):
                    mine, theirs = values["moor"], values[other]
                    ratio = mine / theirs if mine is not None and theirs else None
                    ratios[f"{key}.{stat} moor/{other}"] = ratio
                    row.append(f"{ratio:.2f}x" if ratio is not None else "-")
            row.append(goal(path, tool, stat))
            table.append(row)
    return table, ratios


# --------------------------------------------------------------------------- main


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=2, help="iperf3 time per run")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per docker phase")
    parser.add_argument("--count", type=int, default=5000, help="round trips on 1 connection")
    parser.add_argument("--conn-count", type=int, default=1000, help="connections per run")
    parser.add_argument("--size", type=int, default=1, help="bytes per tcprr message")
    parser.add_argument(
        "--no-pin", action="store_true", help="let the scheduler place clients and servers"
    )
    parser.add_argument("--host-ip", help="the host address of the kernel-forwarded path")
    parser.add_argument("--skip-docker", action="store_true", help="measure Moorage alone")
    parser.add_argument("--skip-moor", action="store_true", help="measure dockerd alone")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    if args.skip_docker and args.skip_moor:
        parser.error("--skip-docker and --skip-moor leave nothing to measure")
    for opt in ("seconds", "rounds", "count", "conn_count"):
        if getattr(args, opt) < 1:
            parser.error(f"--{opt.replace('_', '-')} must be at least 1")
    if not 1 <= args.size <= 65536:
        parser.error("--size must be in [1, 65536]")
    if os.geteuid() != 0:
        parser.error("run it as root: both daemons and the network set-up need it")
    for tool in ("gcc", "ip", "iptables", "nft", "ldd", *(() if args.no_pin else ("taskset",))):
        if shutil.which(tool) is None:
            parser.error(f"{tool} is not installed")
    if not os.path.exists(IPERF3):
        parser.error(f"{IPERF3} is not installed (apt-get install iperf3)")
    if not args.skip_docker:
        if not dockerd.available() or not os.path.exists(DOCKER_PROXY):
            parser.error("dockerd, docker or docker-proxy is missing; or use --skip-docker")
        if any(
            line.startswith("-N DOCKER") for t in ("filter", "nat") for line in iptables_lines(t)
        ):
            parser.error(
                "the host has DOCKER chains already (another dockerd with iptables?): the "
                "bench removes docker's chains at the end, so it does not run beside them"
            )
    return args


@dataclass
class Made:
    """What this run made on the host, for cleanup() to remove."""

    before: HostState
    work: Path
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    dummy: str = ""
    moor: MoorNet | None = None
    docker: DockerNet | None = None

    def names(self) -> set[str]:
        """This run's interfaces and nftables tables."""
        out = {self.dummy} - {""}
        if self.moor is not None:
            out |= self.moor.names()
        if self.docker is not None:
            out |= self.docker.bridges
        return out


def print_report(
    summary: Summary,
    failures: Failures,
    meta: dict[str, Any],
    args: argparse.Namespace,
) -> None:
    table, _ = report(summary, failures, meta["host_ip"])
    versions = ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
    print(
        f"{meta['cpus']} CPUs, kernel {meta['kernel']} ({versions}, {meta['iperf3']}); "
        f"{args.rounds} rounds per docker phase; iperf3 -t {args.seconds}; tcprr "
        f"{args.count} round trips on 1 connection, {args.conn_count} connections, "
        f"{args.size} B messages"
    )
    print_table(table)
    print(
        "docker: dockerd's default --userland-proxy=true (docker-proxy serves 127.0.0.1); "
        "docker-nat: --userland-proxy=false (DNAT and route_localnet, as Moorage). "
        "Each ratio compares runs of one phase: moor's first column ran interleaved "
        "with docker, its second with docker-nat"
    )
    for side, failed in failures.items():
        for path, why in failed["paths"].items():
            print(f"{side}: {path} does not work: {why}")
        for error in failed["runs"]:
            print(f"{side}: a run failed (*): {error}")


def bench(args: argparse.Namespace, made: Made) -> None:
    tag = made.tag
    host_ip = args.host_ip or host_address()
    if host_ip is None:
        made.dummy = f"mdk{tag}d"
        host_ip = str(next(free_subnets(1)[0].hosts()))
        run(["ip", "link", "add", made.dummy, "type", "dummy"])
        run(["ip", "addr", "add", f"{host_ip}/32", "dev", made.dummy])
        run(["ip", "link", "set", made.dummy, "up"])
    moor_subnet, docker_subnet, docker_bridge_subnet = free_subnets(3)
    log(f"building tcprr and the image ({IPERF3}, {' '.join(shared_libraries(IPERF3))})")
    tcprr = build_tcprr(made.work)
    image_tar = build_image_tar(made.work, tcprr)
    plan = Plan(
        tag=tag,
        network=f"bench-net-{tag}",
        server=f"bench-server-{tag}",
        client=f"bench-client-{tag}",
        docker_bridge=f"mdk{tag}",
        docker_net_bridge=f"mdk{tag}n",
        host_ip=host_ip,
        tcprr=tcprr,
        seconds=args.seconds,
        count=args.count,
        conn_count=args.conn_count,
        size=args.size,
        cpus=None if args.no_pin else pinned_cpus(),
    )
    ports = free_ports(4)
    versions: dict[str, str] = {}
    if not args.skip_moor:
        made.moor = MoorNet()
        made.moor.start(made.work, image_tar)
        versions["moor"] = made.moor.version()
        set_up(made.moor, plan, moor_subnet, (ports[0], ports[1]))
        preflight(made.moor, plan)
    phases: list[bool | None] = [None]  # Moorage alone
    if not args.skip_docker:
        made.docker = DockerNet(made.work, plan.docker_bridge, docker_bridge_subnet)
        phases = [True, False]
    samples: Samples = {}
    failures: Failures = {}
    for proxy in phases:
        sides: list[Side] = [made.moor] if made.moor is not None else []
        if made.docker is not None and proxy is not None:
            made.docker.start_phase(proxy, image_tar)
            versions["docker"] = made.docker.version()
            set_up(made.docker, plan, docker_subnet, (ports[2], ports[3]))
            preflight(made.docker, plan)
            sides.append(made.docker)
        phase = made.docker.name if made.docker is not None else "moor"
        log(f"{phase} phase: {args.rounds} rounds, {' and '.join(s.name for s in sides)}")
        bench_phase(sides, plan, args.rounds, samples.setdefault(phase, {}), phase)
        for side in sides:
            failed = failures.setdefault(side.name, {"paths": {}, "runs": []})
            failed["paths"].update(side.ends.failed)
            failed["runs"] += side.ends.errors
            side.ends.errors = []
        if made.docker is not None:
            made.docker.end_phase()
    summary = summarize(samples)
    _, ratios = report(summary, failures, host_ip)
    meta = {
        "seconds": args.seconds,
        "rounds": args.rounds,
        "count": args.count,
        "conn_count": args.conn_count,
        "size": args.size,
        "host_ip": host_ip,
        "versions": versions,
        "iperf3": run([IPERF3, "--version"]).splitlines()[0],
        "kernel": os.uname().release,
        "cpus": os.cpu_count(),
    }
    if args.json:
        out = {"meta": meta, "results": summary, "ratios": ratios, "failures": failures}
        print(json.dumps({**out, "samples": samples}, indent=2))
    else:
        print_report(summary, failures, meta, args)


def cleanup(made: Made) -> None:
    """Everything the run made, gone; then the host compared with how it was."""
    steps: list[tuple[str, Callable[[], object]]] = []
    if made.docker is not None:
        steps += [("docker", made.docker.stop), ("docker's rules", made.docker.remove_host_state)]
    if made.moor is not None:
        steps.append(("moor", made.moor.stop))
    steps.append(("iptables-nft tables", lambda: remove_empty_tables(made.before.tables)))
    if made.dummy:
        steps.append(("the dummy interface", lambda: quiet(["ip", "link", "del", made.dummy])))
    ours = made.names()
    for what, step in steps:
        try:
            step()
        except Exception as exc:  # noqa: BLE001 - clean up the rest anyway
            log(f"bench/net.py: cleaning up {what}: {exc}")
    shutil.rmtree(made.work, ignore_errors=True)
    for name, value in made.before.sysctls.items():
        now = read_sysctl(name)
        if value is not None and now != value:
            log(f"bench/net.py: sysctl {name} was {value} at the start, is {now}: restored")
            write_sysctl(name, value)
    for difference, mine in made.before.differences(HostState.capture(), ours):
        if mine:
            log(f"bench/net.py: WARNING: left on the host: {difference}")
        else:
            log(f"bench/net.py: note: changed meanwhile, not by this run: {difference}")


def main() -> int:
    args = parse_args()
    made = Made(HostState.capture(), Path(tempfile.mkdtemp(prefix="moorage-bench-net-")))
    code = 1
    try:
        with signals_raise():
            bench(args, made)
            code = 0
    except BenchError as exc:
        log(f"bench/net.py: {exc}")
    except KeyboardInterrupt:
        log("bench/net.py: interrupted; cleaning up")
        code = 130
    finally:
        # A second Ctrl-C must not leave daemons, rules or bridges behind.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            cleanup(made)
        finally:
            signal.signal(signal.SIGINT, previous)
    return code


if __name__ == "__main__":
    sys.exit(main())
