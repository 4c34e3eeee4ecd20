"""The embedded DNS server of user-defined networks: container names in, addresses out.

This module owns the name table of a network (:class:`Records`) and the server that
answers from it (:class:`DnsServer`). The daemon runs one server per user-defined network
on its asyncio loop, listening on the network's gateway address, port 53, UDP and TCP,
in the host's network namespace; the containers' ``resolv.conf`` names the gateway as
their nameserver. Messages are parsed and built with dnspython; no wire code here.

What it answers, as Docker's embedded DNS does:

- ``A`` for a known name (a container name or alias; case-insensitive; exact names,
  no search-domain suffixes): every address with that name, in random order, TTL 600,
  authoritative. Several containers may share an alias.
- Any other type for a known name (``AAAA``: the networks are IPv4-only): NOERROR with
  no answer (NODATA), so that a resolver asking AAAA and A in parallel does not wait
  for a forwarded query or give up on a name that exists.
- ``PTR`` for a container address (``2.0.18.172.in-addr.arpa``): the container's first
  name (the one :meth:`Records.add` got first).
- Anything else is forwarded to the upstream resolvers (the host's, from
  ``/etc/resolv.conf``: :func:`host_nameservers`; the server runs in the host's netns,
  so a loopback resolver such as systemd-resolved's 127.0.0.53 works), tried in
  order, over UDP with a timeout, again over TCP when the UDP answer is truncated. An
  upstream's SERVFAIL, REFUSED or non-authoritative NXDOMAIN moves on to the next one,
  as Docker does; the last answer, or SERVFAIL when no upstream answered, goes back.
- Internal networks (``forward=False``): unknown names get SERVFAIL, as from Docker's
  resolver when it may not proxy; nothing leaves the host.

Against hostile clients: a datagram too short for a header, or a response (QR set), is
dropped; one that does not parse gets FORMERR; no exception escapes a handler. Memory is
bounded: at most ``max_pending_forwards`` forwarded queries in flight (more get SERVFAIL
at once), at most ``max_tcp_connections`` TCP connections (more are closed at once),
TCP messages are at most 64 KiB, a TCP connection idle for ``tcp_idle_timeout`` is
closed, and UDP replies are dropped while the socket's send queue is over a bound.

Example::

    records = Records()
    records.add(["web", "www"], IPv4Address("172.18.0.2"), owner="c1")
    server = DnsServer(records, host_nameservers())
    await server.start("172.18.0.1")           # port 53
    ...
    await server.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import ipaddress
import logging
import random
import socket
import threading
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any, Final, TypeVar

import dns.asyncquery
import dns.entropy
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.reversename
import dns.rrset

from moorage.errors import Conflict, FailedPrecondition, InvalidArgument, PermissionDenied

__all__ = [
    "ANSWER_TTL",
    "DEFAULT_NAMESERVERS",
    "DnsServer",
    "Records",
    "host_nameservers",
]

log = logging.getLogger(__name__)

ANSWER_TTL: Final = 600  # Docker's TTL for container names
DEFAULT_NAMESERVERS: Final = ("8.8.8.8", "8.8.4.4")  # Docker's, when the host has none
FORWARD_TIMEOUT: Final = 4.0  # per upstream and transport, Docker's extIOTimeout
MAX_PENDING_FORWARDS: Final = 1024  # Docker's maxConcurrent
MAX_TCP_CONNECTIONS: Final = 256
TCP_IDLE_TIMEOUT: Final = 10.0

_HEADER_SIZE: Final = 12
_UDP_DEFAULT_SIZE: Final = 512  # without EDNS (RFC 1035)
_TCP_MAX_SIZE: Final = 65535
_OUR_PAYLOAD: Final = 1232  # the EDNS payload we advertise (DNS flag day 2020)
_MAX_UDP_SEND_QUEUE: Final = 1 << 20
_BIND_ATTEMPTS: Final = 10

_K = TypeVar("_K")
_V = TypeVar("_V")


# --------------------------------------------------------------------------- records


def _name(text: str | dns.name.Name) -> dns.name.Name:
    """A DNS name; its equality and hash ignore case, and ``web`` equals ``web.``."""
    if isinstance(text, dns.name.Name):
        return text
    if not text.strip("."):
        raise InvalidArgument(f'invalid dns name "{text}"')
    try:
        return dns.name.from_text(text)
    except dns.exception.DNSException as exc:
        raise InvalidArgument(f'invalid dns name "{text}": {exc}') from exc


class Records:
    """The names of one network: which containers (owners) answer to which names.

    Thread-safe: the engine changes it from any thread while the server reads it on
    the loop. Names are compared without case, and a trailing dot does not matter.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owned: dict[str, list[tuple[dns.name.Name, IPv4Address]]] = {}
        self._names: dict[dns.name.Name, list[tuple[str, IPv4Address]]] = {}
        self._ptr: dict[IPv4Address, list[tuple[str, dns.name.Name]]] = {}

    def add(self, names: Iterable[str], ip: IPv4Address, owner: str) -> None:
        """``names`` resolve to ``ip`` until ``owner`` is removed.

        The first name is the canonical one: reverse lookups of ``ip`` answer it.
        """
        parsed = [_name(text) for text in names]
        if not parsed:
            raise InvalidArgument(f"no names for {ip}")
        with self._lock:
            owned = self._owned.setdefault(owner, [])
            for name in parsed:
                if (name, ip) not in owned:
                    owned.append((name, ip))
                    self._names.setdefault(name, []).append((owner, ip))
            pointers = self._ptr.setdefault(ip, [])
            if all(holder != owner for holder, _ in pointers):
                pointers.append((owner, parsed[0]))

    def remove(self, owner: str) -> None:
        """Forget every name ``owner`` added; nothing happens when it added none."""
        with self._lock:
            for name, ip in self._owned.pop(owner, []):
                _drop(self._names, name, owner)
                _drop(self._ptr, ip, owner)

    def lookup(self, name: str | dns.name.Name) -> list[IPv4Address]:
        """The addresses ``name`` resolves to, each once; empty when it is unknown."""
        try:
            key = _name(name)
        except InvalidArgument:
            return []
        with self._lock:
            found = [ip for _, ip in self._names.get(key, [])]
        return list(dict.fromkeys(found))

    def lookup_ptr(self, ip: IPv4Address) -> str | None:
        """The canonical name of the container with address ``ip``, if any."""
        name = self._ptr_name(ip)
        return None if name is None else name.to_text(omit_final_dot=True)

    def _ptr_name(self, ip: IPv4Address) -> dns.name.Name | None:
        with self._lock:
            pointers = self._ptr.get(ip)
            return pointers[0][1] if pointers else None


def _drop(table: dict[_K, list[tuple[str, _V]]], key: _K, owner: str) -> None:
    kept = [entry for entry in table.get(key, []) if entry[0] != owner]
    if kept:
        table[key] = kept
    else:
        table.pop(key, None)


def host_nameservers(
    path: str | Path = "/etc/resolv.conf", fallback: Iterable[str] = DEFAULT_NAMESERVERS
) -> list[str]:
    """The ``nameserver`` addresses of a resolv.conf, in order; ``fallback`` when none.

    Docker falls back to Google's public resolvers when the host lists none; so does
    this by default. Entries that are not plain IP addresses (an IPv6 zone such as
    ``fe80::1%eth0``) are skipped.
    """
    try:
        text = Path(path).read_text()
    except OSError:
        text = ""
    found: list[str] = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "nameserver" and "%" not in fields[1]:
            with contextlib.suppress(ValueError):
                found.append(str(ipaddress.ip_address(fields[1])))
    return found or list(fallback)


# --------------------------------------------------------------------------- server


@dataclass(frozen=True)
class _Forward:
    """A query to forward, and the largest answer its client can take."""

    query: dns.message.Message
    max_size: int


class DnsServer:
    """Answers a network's names from :class:`Records`, forwards the rest upstream.

    ``upstreams`` are addresses (port 53) or ``(address, port)`` pairs. The server does
    nothing until :meth:`start` and holds no socket after :meth:`close`.
    """

    def __init__(
        self,
        records: Records,
        upstreams: Iterable[str | tuple[str, int]] = (),
        *,
        forward: bool = True,
        timeout: float = FORWARD_TIMEOUT,
        max_pending_forwards: int = MAX_PENDING_FORWARDS,
        max_tcp_connections: int = MAX_TCP_CONNECTIONS,
        tcp_idle_timeout: float = TCP_IDLE_TIMEOUT,
    ) -> None:
        self._records = records
        self._upstreams = [(u, 53) if isinstance(u, str) else (u[0], int(u[1])) for u in upstreams]
        self._forward = forward
        self._timeout = timeout
        self._max_pending = max_pending_forwards
        self._max_tcp = max_tcp_connections
        self._idle = tcp_idle_timeout
        self._pending = 0
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._connections: set[asyncio.Task[Any]] = set()
        self._address: tuple[str, int] | None = None

    @property
    def address(self) -> tuple[str, int]:
        """The ``(host, port)`` it listens on (the chosen port when started with 0)."""
        if self._address is None:
            raise RuntimeError("dns server not started")
        return self._address

    async def start(self, host: str, port: int = 53, *, device: str | None = None) -> None:
        """Listen on ``host:port``, UDP and TCP. Port 0 picks a port free for both.

        ``device`` (a bridge's name) binds the sockets to that interface
        (``SO_BINDTODEVICE``): then only queries that arrive on it are answered, not
        those from the host or from containers of other networks routed to this address.
        """
        if self._address is not None:
            raise RuntimeError("a dns server starts once")
        udp_sock, tcp_sock, bound = _bind_pair(host, port, device)
        loop = asyncio.get_running_loop()
        try:
            udp, _ = await loop.create_datagram_endpoint(lambda: _UdpProtocol(self), sock=udp_sock)
        except BaseException:
            udp_sock.close()
            tcp_sock.close()
            raise
        self._udp = udp  # before the TCP side, so that no early query's reply is lost
        try:
            self._tcp = await asyncio.start_server(self._serve_tcp, sock=tcp_sock)
        except BaseException:
            tcp_sock.close()
            udp.close()
            self._udp = None
            raise
        self._address = (host, bound)
        # A server listed as its own upstream would forward its queries to itself.
        self._upstreams = [u for u in self._upstreams if u != self._address]

    async def close(self) -> None:
        """Stop listening, drop queries in flight, close TCP connections. Idempotent."""
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._tcp is not None:
            self._tcp.close()
        running = [*self._tasks, *self._connections]
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        if self._tcp is not None:
            await self._tcp.wait_closed()
            self._tcp = None

    # ---------------------------------------------------------------- UDP

    def _on_datagram(self, data: bytes, addr: Any) -> None:
        outcome = self._decide(data, udp=True)
        if isinstance(outcome, _Forward):
            self._spawn(self._forward_udp(outcome, addr))
        elif outcome is not None:
            self._send_udp(outcome, addr)

    def _send_udp(self, wire: bytes, addr: Any) -> None:
        transport = self._udp
        if transport is None:
            return
        # asyncio queues what the socket does not take at once, without a bound.
        queued: int = getattr(transport, "get_write_buffer_size", lambda: 0)()
        if queued > _MAX_UDP_SEND_QUEUE:
            return
        transport.sendto(wire, addr)

    async def _forward_udp(self, forward: _Forward, addr: Any) -> None:
        self._send_udp(await self._forwarded(forward), addr)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---------------------------------------------------------------- TCP

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if len(self._connections) >= self._max_tcp or task is None:
            writer.close()
            return
        self._connections.add(task)
        try:
            await self._tcp_session(reader, writer)
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            pass
        except asyncio.CancelledError:
            # close() ends the connections. Not re-raised: on Python 3.11 the stream
            # protocol's done-callback fails on a cancelled handler task.
            pass
        except Exception:
            log.exception("dns tcp connection failed")
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _tcp_session(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Length-prefixed messages, one after another, until EOF, idleness or garbage."""
        while True:
            async with asyncio.timeout(self._idle):
                try:
                    prefix = await reader.readexactly(2)
                except asyncio.IncompleteReadError:
                    return
                data = await reader.readexactly(int.from_bytes(prefix, "big"))
            outcome = self._decide(data, udp=False)
            if isinstance(outcome, _Forward):
                outcome = await self._forwarded(outcome)
            if outcome is None:
                return
            writer.write(len(outcome).to_bytes(2, "big") + outcome)
            async with asyncio.timeout(self._idle):
                await writer.drain()

    # ---------------------------------------------------------------- answers

    def _decide(self, data: bytes, *, udp: bool) -> bytes | _Forward | None:
        """The reply to ``data``, or what to forward, or None to drop it."""
        if len(data) < _HEADER_SIZE:
            return None
        flags = int.from_bytes(data[2:4], "big")
        if flags & dns.flags.QR:
            return None
        try:
            query = dns.message.from_wire(data)
        except Exception:  # hostile input: dnspython raises many kinds on bad wire
            return _header_only_reply(data, dns.rcode.FORMERR)
        max_size = _max_size(query) if udp else _TCP_MAX_SIZE
        try:
            return self._answer(query, max_size)
        except Exception:
            log.exception("dns query failed")
            return _render(self._reply(query, dns.rcode.SERVFAIL), max_size)

    def _answer(self, query: dns.message.Message, max_size: int) -> bytes | _Forward:
        if query.opcode() != dns.opcode.QUERY:
            return _render(self._reply(query, dns.rcode.NOTIMP), max_size)
        if len(query.question) != 1:
            return _render(self._reply(query, dns.rcode.FORMERR), max_size)
        local = self._local(query)
        if local is not None:
            return _render(local, max_size)
        if not self._forward or not self._upstreams:
            return _render(self._reply(query, dns.rcode.SERVFAIL), max_size)
        if self._pending >= self._max_pending:
            log.debug("dns: %d forwarded queries in flight, refusing more", self._pending)
            return _render(self._reply(query, dns.rcode.SERVFAIL), max_size)
        # The slot is taken here, where the cap is checked, not when the forwarding
        # task first runs: a burst read before any task runs cannot overshoot the cap.
        # _forwarded gives it back.
        self._pending += 1
        return _Forward(query, max_size)

    def _local(self, query: dns.message.Message) -> dns.message.Message | None:
        """The answer from the records, or None when the name is not ours."""
        question = query.question[0]
        if question.rdclass != dns.rdataclass.IN:
            return None
        if question.rdtype == dns.rdatatype.PTR:
            return self._local_ptr(query, question.name)
        addresses = self._records.lookup(question.name)
        if not addresses:
            return None
        reply = self._reply(query, dns.rcode.NOERROR, authoritative=True)
        if question.rdtype == dns.rdatatype.A:
            random.shuffle(addresses)
            rdatas = [_a_rdata(ip) for ip in addresses]
            reply.answer.append(dns.rrset.from_rdata_list(question.name, ANSWER_TTL, rdatas))
        return reply

    def _local_ptr(
        self, query: dns.message.Message, name: dns.name.Name
    ) -> dns.message.Message | None:
        try:
            ip = ipaddress.ip_address(dns.reversename.to_address(name))
        except (dns.exception.DNSException, ValueError):
            return None
        target = self._records._ptr_name(ip) if isinstance(ip, IPv4Address) else None
        if target is None:
            return None
        reply = self._reply(query, dns.rcode.NOERROR, authoritative=True)
        reply.answer.append(
            dns.rrset.from_text_list(name, ANSWER_TTL, "IN", "PTR", [target.to_text()])
        )
        return reply

    def _reply(
        self, query: dns.message.Message, rcode: dns.rcode.Rcode, *, authoritative: bool = False
    ) -> dns.message.Message:
        reply = dns.message.make_response(
            query, recursion_available=self._forward, our_payload=_OUR_PAYLOAD
        )
        reply.set_rcode(rcode)
        if authoritative:
            reply.flags |= dns.flags.AA
        return reply

    # ---------------------------------------------------------------- forwarding

    async def _forwarded(self, forward: _Forward) -> bytes:
        """The upstreams' answer to a query, for a client that takes ``max_size`` bytes."""
        query = forward.query
        client_id = query.id
        try:
            answer = await self._ask_upstreams(query)
        finally:
            self._pending -= 1
        if answer is None:
            query.id = client_id
            return _render(self._reply(query, dns.rcode.SERVFAIL), forward.max_size)
        answer.id = client_id
        return _render(answer, forward.max_size)

    async def _ask_upstreams(self, query: dns.message.Message) -> dns.message.Message | None:
        last: dns.message.Message | None = None
        for host, port in self._upstreams:
            # A fresh id per upstream query: the client's may be predictable.
            query.id = dns.entropy.random_16()
            try:
                answer, _ = await dns.asyncquery.udp_with_fallback(
                    query, host, timeout=self._timeout, port=port, ignore_unexpected=True
                )
            except (dns.exception.DNSException, OSError, EOFError) as exc:
                log.debug("dns: upstream %s:%d failed: %r", host, port, exc)
                continue
            last = answer
            if _final(answer):
                break
        return last


@functools.lru_cache(maxsize=4096)
def _a_rdata(ip: IPv4Address) -> dns.rdata.Rdata:
    """The A record data of ``ip``; cached, since parsing it is most of an answer's cost."""
    return dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.A, str(ip))


def _final(answer: dns.message.Message) -> bool:
    """Whether an upstream's answer ends the search (else Docker tries the next one)."""
    rcode = answer.rcode()
    if rcode == dns.rcode.NOERROR:
        return True
    return rcode == dns.rcode.NXDOMAIN and bool(answer.flags & dns.flags.AA)


def _max_size(query: dns.message.Message) -> int:
    """The largest UDP answer the client takes: its EDNS payload, else 512."""
    if query.edns < 0:
        return _UDP_DEFAULT_SIZE
    return min(max(query.payload, _UDP_DEFAULT_SIZE), _TCP_MAX_SIZE)


def _render(message: dns.message.Message, max_size: int) -> bytes:
    """Wire form; what does not fit is cut and TC set, so the client retries over TCP."""
    return message.to_wire(max_size=max_size, prefer_truncation=True)


def _header_only_reply(data: bytes, rcode: dns.rcode.Rcode) -> bytes:
    """A reply to a query that did not parse: its id, opcode and RD, and ``rcode``."""
    flags = int.from_bytes(data[2:4], "big")
    reply = dns.message.Message(id=int.from_bytes(data[:2], "big"))
    reply.flags = dns.flags.QR | (flags & dns.flags.RD)
    reply.set_opcode(dns.opcode.from_flags(flags))
    reply.set_rcode(rcode)
    return reply.to_wire()


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer) -> None:
        self._server = server

    def datagram_received(self, data: bytes, addr: Any) -> None:
        try:
            self._server._on_datagram(data, addr)
        except Exception:
            log.exception("dns datagram from %s failed", addr)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors for earlier replies (a client that went away): nothing to do.
        log.debug("dns udp socket: %s", exc)


def _bind_pair(
    host: str, port: int, device: str | None
) -> tuple[socket.socket, socket.socket, int]:
    """A UDP and a listening TCP socket on the same ``host:port``, and the port.

    Port 0: a port that is free for both (the kernel picks the UDP one; when its TCP
    twin is taken, another try).
    """
    family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    for _ in range(_BIND_ATTEMPTS if port == 0 else 1):
        udp = _socket(family, socket.SOCK_DGRAM, device)
        try:
            _bind(udp, host, port)
            chosen: int = udp.getsockname()[1]
            tcp = _socket(family, socket.SOCK_STREAM, device)
        except BaseException:
            udp.close()
            raise
        try:
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            _bind(tcp, host, chosen)
            tcp.listen(socket.SOMAXCONN)
        except BaseException as exc:
            tcp.close()
            udp.close()
            if port == 0 and isinstance(exc, Conflict):
                continue
            raise
        return udp, tcp, chosen
    raise Conflict(f"no port free for both udp and tcp on {host}")


def _bind(sock: socket.socket, host: str, port: int) -> None:
    try:
        sock.bind((host, port))
    except OSError as exc:
        where = f"{host}:{port}"
        if exc.errno == errno.EADDRINUSE:
            raise Conflict(f"dns server address {where} is already in use") from exc
        if exc.errno == errno.EADDRNOTAVAIL:
            raise FailedPrecondition(f"{host} is not an address of this host") from exc
        if exc.errno == errno.EACCES:
            raise PermissionDenied(f"dns server cannot bind {where}: permission denied") from exc
        raise


def _socket(
    family: socket.AddressFamily, kind: socket.SocketKind, device: str | None
) -> socket.socket:
    sock = socket.socket(family, kind | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)
    try:
        if device is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, device.encode())
    except BaseException:
        sock.close()
        raise
    return sock
