"""The embedded DNS server on 127.0.0.1: local names, forwarding, TCP, hostile input.

The servers run on an asyncio loop in a background thread (as on the daemon's loop);
the tests query them with dnspython's blocking client, as a container's resolver would.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import threading
from collections.abc import Callable, Coroutine, Iterator
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any, TypeVar

import dns.flags
import dns.message
import dns.opcode
import dns.query
import dns.rcode
import dns.rdatatype
import dns.reversename
import dns.rrset
import pytest

from moorage.engine.network.dns import ANSWER_TTL, DnsServer, Records, host_nameservers
from moorage.errors import Conflict, InvalidArgument

T = TypeVar("T")
HOST = "127.0.0.1"
WAIT = 10.0  # seconds a blocking client waits before the test fails (never reached)


# --------------------------------------------------------------------------- harness


class LoopThread:
    """An asyncio loop running in a thread, like the daemon's."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="test-dns-loop")
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(WAIT)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


class FakeUpstream:
    """A resolver on loopback: A answers from a table, NXDOMAIN for the rest.

    ``truncate_udp`` answers UDP with TC and no records (the full answer is on TCP);
    ``silent`` never answers. ``seen`` lists ``(transport, name)`` of each query.
    """

    def __init__(
        self, table: dict[str, list[str]], *, truncate_udp: bool = False, silent: bool = False
    ) -> None:
        self.table = table
        self.truncate_udp = truncate_udp
        self.silent = silent
        self.seen: list[tuple[str, str]] = []
        self.port = 0
        self._arrived: asyncio.Condition | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None

    def answer(self, data: bytes, transport: str) -> bytes | None:
        query = dns.message.from_wire(data)
        name = query.question[0].name.to_text(omit_final_dot=True)
        self.seen.append((transport, name))
        if self._arrived is not None:
            self._wake(self._arrived)
        if self.silent:
            return None
        reply = dns.message.make_response(query, recursion_available=True)
        if transport == "udp" and self.truncate_udp:
            reply.flags |= dns.flags.TC
        elif name in self.table:
            reply.answer.append(
                dns.rrset.from_text_list(query.question[0].name, 30, "IN", "A", self.table[name])
            )
        else:
            reply.set_rcode(dns.rcode.NXDOMAIN)
        return reply.to_wire()

    @staticmethod
    def _wake(arrived: asyncio.Condition) -> None:
        async def notify() -> None:
            async with arrived:
                arrived.notify_all()

        asyncio.get_running_loop().create_task(notify())

    async def wait_seen(self, count: int) -> None:
        """Until ``count`` queries have come."""
        assert self._arrived is not None
        async with self._arrived:
            await self._arrived.wait_for(lambda: len(self.seen) >= count)

    async def start(self) -> None:
        upstream = self
        self._arrived = asyncio.Condition()

        class Udp(asyncio.DatagramProtocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.transport = transport

            def datagram_received(self, data: bytes, addr: Any) -> None:
                wire = upstream.answer(data, "udp")
                if wire is not None:
                    self.transport.sendto(wire, addr)  # type: ignore[attr-defined]

        async def serve_tcp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                size = int.from_bytes(await reader.readexactly(2), "big")
                wire = upstream.answer(await reader.readexactly(size), "tcp")
                if wire is not None:
                    writer.write(len(wire).to_bytes(2, "big") + wire)
                    await writer.drain()
            finally:
                writer.close()

        loop = asyncio.get_running_loop()
        # The kernel picks a free UDP port; its TCP twin may be another socket's (an
        # ephemeral port of a connection on loopback): then another pair.
        for _ in range(20):
            udp, _ = await loop.create_datagram_endpoint(Udp, local_addr=(HOST, 0))
            port = udp.get_extra_info("sockname")[1]
            try:
                self._tcp = await asyncio.start_server(serve_tcp, HOST, port)
            except OSError:
                udp.close()
                continue
            self._udp, self.port = udp, port
            return
        raise RuntimeError("no port free for both udp and tcp")

    async def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
            await self._tcp.wait_closed()


@pytest.fixture
def loop() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.close()


@pytest.fixture
def records() -> Records:
    table = Records()
    table.add(["web", "www"], IPv4Address("172.18.0.2"), "c1")
    return table


@pytest.fixture
def upstream(loop: LoopThread) -> Iterator[Callable[..., FakeUpstream]]:
    started: list[FakeUpstream] = []

    def start(table: dict[str, list[str]] | None = None, **options: bool) -> FakeUpstream:
        fake = FakeUpstream(table or {}, **options)
        loop.run(fake.start())
        started.append(fake)
        return fake

    yield start
    for fake in started:
        loop.run(fake.close())


@pytest.fixture
def server(loop: LoopThread, records: Records) -> Iterator[Callable[..., DnsServer]]:
    """Starts a DnsServer on 127.0.0.1 with a free port; closes it at teardown."""
    started: list[DnsServer] = []

    def start(upstreams: list[Any] | None = None, **options: Any) -> DnsServer:
        dns_server = DnsServer(records, upstreams or [], **options)
        started.append(dns_server)
        loop.run(dns_server.start(HOST, 0))
        return dns_server

    yield start
    for dns_server in started:
        loop.run(dns_server.close())


@pytest.fixture(autouse=True)
def _no_errors_logged(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """No handler may fail: an exception logged by the server fails the test."""
    with caplog.at_level(logging.ERROR, logger="moorage.engine.network.dns"):
        yield
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


def udp(server: DnsServer, name: str, rdtype: str = "A", **query: Any) -> dns.message.Message:
    host, port = server.address
    return dns.query.udp(dns.message.make_query(name, rdtype, **query), host, WAIT, port)


def tcp(server: DnsServer, name: str, rdtype: str = "A") -> dns.message.Message:
    host, port = server.address
    return dns.query.tcp(dns.message.make_query(name, rdtype), host, WAIT, port)


def addresses(reply: dns.message.Message) -> set[str]:
    return {rd.to_text() for rrset in reply.answer for rd in rrset}


@pytest.fixture
def client() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(WAIT)
    yield sock
    sock.close()


# --------------------------------------------------------------------------- records


def test_records_lookup_ignores_case_and_trailing_dot(records: Records) -> None:
    assert records.lookup("WEB.") == [IPv4Address("172.18.0.2")]
    assert records.lookup("www") == [IPv4Address("172.18.0.2")]
    assert records.lookup("nope") == []


def test_records_shared_alias_answers_every_address(records: Records) -> None:
    records.add(["db", "www"], IPv4Address("172.18.0.3"), "c2")
    assert records.lookup("www") == [IPv4Address("172.18.0.2"), IPv4Address("172.18.0.3")]
    records.remove("c1")
    assert records.lookup("www") == [IPv4Address("172.18.0.3")]
    assert records.lookup("web") == []


def test_records_remove_is_idempotent(records: Records) -> None:
    records.remove("c1")
    records.remove("c1")
    records.remove("nobody")
    assert records.lookup("web") == []
    assert records.lookup_ptr(IPv4Address("172.18.0.2")) is None


def test_records_ptr_is_the_first_name(records: Records) -> None:
    records.add(["alias"], IPv4Address("172.18.0.2"), "c1")
    assert records.lookup_ptr(IPv4Address("172.18.0.2")) == "web"


@pytest.mark.parametrize("name", ["", ".", "a..b", "x" * 64])
def test_records_reject_bad_names(records: Records, name: str) -> None:
    with pytest.raises(InvalidArgument, match="invalid dns name"):
        records.add([name], IPv4Address("172.18.0.9"), "c9")


def test_records_want_a_name(records: Records) -> None:
    with pytest.raises(InvalidArgument, match="no names for 172.18.0.9"):
        records.add([], IPv4Address("172.18.0.9"), "c9")


def test_host_nameservers(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text(
        "# comment\nsearch example.org\nnameserver 10.0.0.2\n"
        "nameserver fe80::1%eth0\nnameserver 2001:db8::1\n;nameserver 9.9.9.9\nnameserver\n"
    )
    assert host_nameservers(conf) == ["10.0.0.2", "2001:db8::1"]


def test_host_nameservers_falls_back_like_docker(tmp_path: Path) -> None:
    assert host_nameservers(tmp_path / "missing") == ["8.8.8.8", "8.8.4.4"]
    assert host_nameservers(tmp_path / "missing", fallback=()) == []


# --------------------------------------------------------------------------- local answers


def test_a_for_a_container_name(server: Callable[..., DnsServer]) -> None:
    reply = udp(server(), "web")
    assert reply.rcode() == dns.rcode.NOERROR
    assert reply.flags & dns.flags.AA
    assert addresses(reply) == {"172.18.0.2"}
    assert reply.answer[0].ttl == ANSWER_TTL


def test_names_are_case_insensitive_and_echo_the_question(
    server: Callable[..., DnsServer],
) -> None:
    reply = udp(server(), "WwW.")
    assert addresses(reply) == {"172.18.0.2"}
    assert reply.answer[0].name.to_text() == "WwW."


def test_shared_alias_answers_all_addresses(
    server: Callable[..., DnsServer], records: Records
) -> None:
    records.add(["www"], IPv4Address("172.18.0.3"), "c2")
    assert addresses(udp(server(), "www")) == {"172.18.0.2", "172.18.0.3"}


def test_changes_to_the_records_show_at_once(
    server: Callable[..., DnsServer], records: Records
) -> None:
    dns_server = server()
    records.add(["late"], IPv4Address("172.18.0.7"), "c7")
    assert addresses(udp(dns_server, "late")) == {"172.18.0.7"}
    records.remove("c7")
    assert udp(dns_server, "late").rcode() == dns.rcode.SERVFAIL  # unknown, no upstream


@pytest.mark.parametrize("rdtype", ["AAAA", "MX", "TXT"])
def test_other_types_of_a_known_name_are_nodata_not_forwarded(
    server: Callable[..., DnsServer], upstream: Callable[..., FakeUpstream], rdtype: str
) -> None:
    fake = upstream()
    reply = udp(server([(HOST, fake.port)]), "web", rdtype)
    assert reply.rcode() == dns.rcode.NOERROR
    assert reply.answer == []
    assert fake.seen == []


def test_ptr_of_a_container_address(server: Callable[..., DnsServer]) -> None:
    reply = udp(server(), dns.reversename.from_address("172.18.0.2").to_text(), "PTR")
    assert reply.rcode() == dns.rcode.NOERROR
    assert [rd.to_text() for rd in reply.answer[0]] == ["web."]


def test_ptr_of_an_unknown_address_is_forwarded(
    server: Callable[..., DnsServer], upstream: Callable[..., FakeUpstream]
) -> None:
    fake = upstream()
    reply = udp(server([(HOST, fake.port)]), "9.0.18.172.in-addr.arpa", "PTR")
    assert reply.rcode() == dns.rcode.NXDOMAIN
    assert fake.seen == [("udp", "9.0.18.172.in-addr.arpa")]


def test_an_answer_too_big_for_udp_is_truncated_and_whole_over_tcp(
    server: Callable[..., DnsServer], records: Records
) -> None:
    for n in range(100):
        records.add(["many"], IPv4Address(f"172.18.1.{n}"), f"m{n}")
    dns_server = server()
    over_udp = udp(dns_server, "many")
    assert over_udp.flags & dns.flags.TC
    assert len(over_udp.to_wire()) <= 512
    assert len(addresses(tcp(dns_server, "many"))) == 100


def test_edns_lets_a_bigger_answer_through_udp(
    server: Callable[..., DnsServer], records: Records
) -> None:
    for n in range(100):
        records.add(["many"], IPv4Address(f"172.18.1.{n}"), f"m{n}")
    reply = udp(server(), "many", use_edns=0, payload=4096)
    assert not reply.flags & dns.flags.TC
    assert len(addresses(reply)) == 100


# --------------------------------------------------------------------------- forwarding


def test_unknown_names_are_forwarded(
    server: Callable[..., DnsServer], upstream: Callable[..., FakeUpstream]
) -> None:
    fake = upstream({"example.com": ["93.184.216.34"]})
    reply = udp(server([(HOST, fake.port)]), "example.com")
    assert reply.rcode() == dns.rcode.NOERROR
    assert addresses(reply) == {"93.184.216.34"}
    assert fake.seen == [("udp", "example.com")]


def test_upstream_nxdomain_comes_back(
    server: Callable[..., DnsServer], upstream: Callable[..., FakeUpstream]
) -> None:
    fake = upstream()
    assert udp(server([(HOST, fake.port)]), "nowhere.test").rcode() == dns.rcode.NXDOMAIN


def test_a_truncated_upstream_answer_is_asked_again_over_tcp(
    server: Callable[..., DnsServer], upstream: Callable[..., FakeUpstream]
) -> None:
    many = [f"10.1.{n // 250}.{n % 250}" for n in range(60)]
    fake = upstream({"big.test": many}, truncate_udp=True)
    reply = udp(server([(HOST, fake.port)]), "big.test", use_edns=0, payload=4096)
    assert not reply.flags & dns.flags.TC
    assert addresses(reply) == set(many)
    assert fake.seen == [("udp", "big.test"), ("tcp", "big.test")]


def test_a_forwarded_answer_too_big_for_the_client_is_truncated(
    server: Callable[..., DnsServer], upstream: Callable[..., FakeUpstream]
) -> None:
    many = [f"10.1.{n // 250}.{n % 250}" for n in range(60)]
    fake = upstream({"big.test": many}, truncate_udp=True)
    dns_server = server([(HOST, fake.port)])
    assert udp(dns_server, "big.test").flags & dns.flags.TC  # 512 bytes, no EDNS
    assert addresses(tcp(dns_server, "big.test")) == set(many)


def test_all_upstreams_down_is_servfail(
    server: Callable[..., DnsServer], upstream: Callable[..., FakeUpstream]
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((HOST, 0))
        closed_port = probe.getsockname()[1]
    silent = upstream(silent=True)
    dns_server = server([(HOST, closed_port), (HOST, silent.port)], timeout=0.2)
    assert udp(dns_server, "example.com").rcode() == dns.rcode.SERVFAIL
    assert silent.seen == [("udp", "example.com")]


def test_the_next_upstream_is_tried(
    server: Callable[..., DnsServer], upstream: Callable[..., FakeUpstream]
) -> None:
    silent = upstream(silent=True)
    good = upstream({"example.com": ["192.0.2.8"]})
    dns_server = server([(HOST, silent.port), (HOST, good.port)], timeout=0.2)
    assert addresses(udp(dns_server, "example.com")) == {"192.0.2.8"}


def test_internal_networks_do_not_forward(
    server: Callable[..., DnsServer], upstream: Callable[..., FakeUpstream]
) -> None:
    fake = upstream({"example.com": ["93.184.216.34"]})
    dns_server = server([(HOST, fake.port)], forward=False)
    reply = udp(dns_server, "example.com")
    assert reply.rcode() == dns.rcode.SERVFAIL
    assert not reply.flags & dns.flags.RA
    assert fake.seen == []
    assert addresses(udp(dns_server, "web")) == {"172.18.0.2"}


def test_too_many_forwards_in_flight_get_servfail_at_once(
    loop: LoopThread,
    server: Callable[..., DnsServer],
    upstream: Callable[..., FakeUpstream],
    client: socket.socket,
) -> None:
    silent = upstream(silent=True)
    dns_server = server([(HOST, silent.port)], timeout=WAIT * 3, max_pending_forwards=1)
    client.sendto(dns.message.make_query("slow.test", "A").to_wire(), dns_server.address)
    loop.run(silent.wait_seen(1))
    assert udp(dns_server, "second.test").rcode() == dns.rcode.SERVFAIL
    assert addresses(udp(dns_server, "web")) == {"172.18.0.2"}  # local names still answer


# --------------------------------------------------------------------------- TCP


def test_several_queries_on_one_tcp_connection(server: Callable[..., DnsServer]) -> None:
    dns_server = server()
    with socket.create_connection(dns_server.address, timeout=WAIT) as conn:
        for name in ("web", "www", "WEB"):
            query = dns.message.make_query(name, "A")
            reply = dns.query.tcp(query, HOST, WAIT, dns_server.address[1], sock=conn)
            assert addresses(reply) == {"172.18.0.2"}


def test_tcp_connections_over_the_limit_are_closed(server: Callable[..., DnsServer]) -> None:
    dns_server = server(max_tcp_connections=1)
    with socket.create_connection(dns_server.address, timeout=WAIT) as first:
        query = dns.message.make_query("web", "A")
        dns.query.tcp(query, HOST, WAIT, dns_server.address[1], sock=first)  # first is served
        with socket.create_connection(dns_server.address, timeout=WAIT) as second:
            assert second.recv(1) == b""
        assert addresses(dns.query.tcp(query, HOST, WAIT, dns_server.address[1], sock=first))


def test_an_idle_tcp_connection_is_closed(server: Callable[..., DnsServer]) -> None:
    dns_server = server(tcp_idle_timeout=0.1)
    with socket.create_connection(dns_server.address, timeout=WAIT) as conn:
        assert conn.recv(1) == b""


def test_a_half_sent_tcp_message_is_closed_when_idle(server: Callable[..., DnsServer]) -> None:
    dns_server = server(tcp_idle_timeout=0.1)
    with socket.create_connection(dns_server.address, timeout=WAIT) as conn:
        conn.sendall(b"\x00\x40abc")  # announces 64 bytes, sends 3
        assert conn.recv(1) == b""
    assert addresses(udp(dns_server, "web")) == {"172.18.0.2"}


def test_tcp_garbage_gets_formerr_and_the_server_lives_on(
    server: Callable[..., DnsServer],
) -> None:
    dns_server = server()
    with socket.create_connection(dns_server.address, timeout=WAIT) as conn:
        conn.sendall(b"\x00\x0c" + b"\x12\x34" + b"\x01\x00" + b"\xff" * 8)
        size = int.from_bytes(conn.recv(2), "big")
        reply = dns.message.from_wire(conn.recv(size))
        assert (reply.id, reply.rcode()) == (0x1234, dns.rcode.FORMERR)
    assert addresses(tcp(dns_server, "web")) == {"172.18.0.2"}


# --------------------------------------------------------------------------- hostile input


def test_short_and_response_packets_are_dropped_garbage_gets_formerr(
    server: Callable[..., DnsServer], client: socket.socket
) -> None:
    dns_server = server()
    response = dns.message.make_response(dns.message.make_query("web", "A")).to_wire()
    client.sendto(b"\x01", dns_server.address)
    client.sendto(response, dns_server.address)
    client.sendto(b"\xab\xcd\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xff", dns_server.address)
    first = dns.message.from_wire(client.recv(65535))  # nothing came for the first two
    assert (first.id, first.rcode()) == (0xABCD, dns.rcode.FORMERR)
    assert first.flags & dns.flags.RD


def test_non_query_opcodes_are_notimp(server: Callable[..., DnsServer]) -> None:
    dns_server = server()
    query = dns.message.make_query("web", "A")
    query.set_opcode(dns.opcode.NOTIFY)
    host, port = dns_server.address
    assert dns.query.udp(query, host, WAIT, port).rcode() == dns.rcode.NOTIMP


def test_a_query_without_a_question_is_formerr(
    server: Callable[..., DnsServer], client: socket.socket
) -> None:
    dns_server = server()
    query = dns.message.Message(id=7)
    client.sendto(query.to_wire(), dns_server.address)
    reply = dns.message.from_wire(client.recv(65535))
    assert (reply.id, reply.rcode()) == (7, dns.rcode.FORMERR)


def test_fuzzed_packets_never_kill_the_server(
    server: Callable[..., DnsServer], client: socket.socket
) -> None:
    dns_server = server()
    rng = random.Random(5)
    valid = dns.message.make_query("web", "A", use_edns=0).to_wire()
    for _ in range(15):
        # Bursts of 20: more at once could overflow the socket's receive buffer, and
        # the kernel would drop the check query, as it may under any flood.
        for n in range(20):
            client.sendto(_fuzzed(rng, valid, garbage=bool(n % 2)), dns_server.address)
        assert addresses(udp(dns_server, "web")) == {"172.18.0.2"}


def _fuzzed(rng: random.Random, valid: bytes, *, garbage: bool) -> bytes:
    """Random bytes, or ``valid`` with a few bytes after the id changed."""
    if garbage:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 80)))
    mutated = bytearray(valid)
    for _ in range(rng.randrange(1, 4)):
        mutated[rng.randrange(2, len(mutated))] = rng.randrange(256)
    return bytes(mutated)


# --------------------------------------------------------------------------- lifecycle


def test_close_frees_the_port(loop: LoopThread, records: Records) -> None:
    dns_server = DnsServer(records)
    loop.run(dns_server.start(HOST, 0))
    host, port = dns_server.address
    loop.run(dns_server.close())
    loop.run(dns_server.close())
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as sock:
            sock.bind((host, port))


def test_an_address_in_use_is_a_conflict(
    loop: LoopThread, records: Records, server: Callable[..., DnsServer]
) -> None:
    host, port = server().address
    second = DnsServer(records)
    with pytest.raises(Conflict, match=f"dns server address {host}:{port} is already in use"):
        loop.run(second.start(host, port))
    loop.run(second.close())


def test_close_ends_forwards_in_flight(
    loop: LoopThread,
    records: Records,
    upstream: Callable[..., FakeUpstream],
    client: socket.socket,
) -> None:
    silent = upstream(silent=True)
    dns_server = DnsServer(records, [(HOST, silent.port)], timeout=WAIT * 3)
    loop.run(dns_server.start(HOST, 0))
    client.sendto(dns.message.make_query("slow.test", "A").to_wire(), dns_server.address)
    with socket.create_connection(dns_server.address, timeout=WAIT) as conn:
        dns.query.send_tcp(conn, dns.message.make_query("slow2.test", "A"))
        loop.run(silent.wait_seen(2))
        loop.run(dns_server.close())  # returns without waiting for the upstream
        assert conn.recv(1) == b""
