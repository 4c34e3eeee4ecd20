"""The embedded DNS server bound to a bridge-like device answers only queries from it.

Two throwaway namespaces stand in for the host (``mtsth...``, running the servers) and a
container (``mtstc...``, the client), joined by a veth pair; a veth pair in the host
stands in for another network's bridge. A server bound (``device=``) to that other link
must not answer the container, though its address is routed and reachable: that is what
keeps containers from reading the names of networks they are not on. Deleting the
namespaces on teardown takes every link along, even when a test fails.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from collections.abc import Iterator

import pytest

pytestmark = pytest.mark.root

SERVERS = r"""
import asyncio, sys
from ipaddress import IPv4Address
from moorage.engine.network.dns import DnsServer, Records

async def main():
    records = Records()
    records.add(["web"], IPv4Address("10.213.0.2"), "c1")
    servers = [DnsServer(records) for _ in range(3)]
    await servers[0].start("10.213.0.1", 53, device="vh")      # the container's network
    await servers[1].start("10.214.0.1", 53, device="other")   # another network's
    await servers[2].start("10.214.0.1", 5353)                 # control: no device
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for server in servers:
        await server.close()

asyncio.run(main())
"""

CLIENT = r"""
import json, socket
import dns.message

def ask(host, port):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(10)
        sock.connect((host, port))
        sock.send(dns.message.make_query("web", "A").to_wire())
        try:
            reply = dns.message.from_wire(sock.recv(65535))
        except ConnectionRefusedError:
            return "refused"
        return [rd.to_text() for rrset in reply.answer for rd in rrset]

print(json.dumps({
    "own": ask("10.213.0.1", 53),
    "other": ask("10.214.0.1", 53),
    "control": ask("10.214.0.1", 5353),
}))
"""


def run(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True, timeout=60).stdout


@pytest.fixture
def namespaces() -> Iterator[tuple[str, str]]:
    suffix = secrets.token_hex(3)
    host, container = f"mtsth{suffix}", f"mtstc{suffix}"
    try:
        run("ip", "netns", "add", host)
        run("ip", "netns", "add", container)
        in_host = ("ip", "-n", host)
        in_container = ("ip", "-n", container)
        run(*in_host, "link", "add", "vh", "type", "veth", "peer", "name", "vc", "netns", container)
        run(*in_host, "link", "add", "other", "type", "veth", "peer", "name", "otherpeer")
        run(*in_host, "addr", "add", "10.213.0.1/24", "dev", "vh")
        run(*in_host, "addr", "add", "10.214.0.1/24", "dev", "other")
        run(*in_container, "addr", "add", "10.213.0.2/24", "dev", "vc")
        for link in ("lo", "vh", "other", "otherpeer"):
            run(*in_host, "link", "set", link, "up")
        for link in ("lo", "vc"):
            run(*in_container, "link", "set", link, "up")
        run(*in_container, "route", "add", "default", "via", "10.213.0.1")
        yield host, container
    finally:
        for name in (host, container):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


def test_a_server_bound_to_a_device_answers_only_queries_from_it(
    namespaces: tuple[str, str],
) -> None:
    host, container = namespaces
    with subprocess.Popen(
        ["ip", "netns", "exec", host, sys.executable, "-c", SERVERS],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as servers:
        assert servers.stdout is not None
        assert servers.stdin is not None
        try:
            assert servers.stdout.readline().strip() == "ready"
            answers = json.loads(
                run("ip", "netns", "exec", container, sys.executable, "-c", CLIENT)
            )
        finally:
            servers.stdin.close()  # the servers close and exit
            servers.wait(timeout=30)
    assert answers == {"own": ["10.213.0.2"], "other": "refused", "control": ["10.213.0.2"]}
    assert servers.returncode == 0
