"""From what people type to where the bytes are: registry host, API endpoint, repository.

The grammar and Docker's completion rules (``busybox`` ->
``docker.io/library/busybox:latest``) are :mod:`moorage.oci.reference`'s; this module
adds what only a client needs::

    >>> t = resolve("busybox")
    >>> t.host, t.endpoint, t.repository, t.object
    ('docker.io', 'registry-1.docker.io', 'library/busybox', 'latest')
    >>> resolve("localhost:5000/team/app@sha256:" + "a" * 64).endpoint
    'localhost:5000'

- ``docker.io`` is a name, not a server: its API lives at ``registry-1.docker.io``,
  and its credentials are filed under ``https://index.docker.io/v1/`` (Docker's key);
- a host is *insecure* (plain HTTP allowed, certificates not checked) when it is a
  loopback address or ``localhost``, or is in the insecure list (``HOST[:PORT]`` or a
  CIDR, as dockerd's ``--insecure-registry`` takes them);
- ``normalize_server`` reads the forms people and tools write a registry in
  (``https://index.docker.io/v1/``, ``http://host:5000/v2/``, ``host:5000``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import NamedTuple

from moorage.errors import InvalidArgument
from moorage.oci.reference import DEFAULT_DOMAIN, Reference, parse_reference

__all__ = [
    "DOCKER_HUB_ENDPOINT",
    "DOCKER_HUB_KEY",
    "HostPolicy",
    "Target",
    "endpoint_of",
    "normalize_server",
    "resolve",
    "split_host",
]

DOCKER_HUB_ENDPOINT = "registry-1.docker.io"
# Where Docker files Docker Hub's credentials, in config.json and X-Registry-Auth.
DOCKER_HUB_KEY = "https://index.docker.io/v1/"
_HUB_ALIASES = frozenset(
    {DEFAULT_DOMAIN, "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"}
)


class Target(NamedTuple):
    """A resolved reference: what to ask for and whom to ask."""

    reference: Reference  # canonical: docker.io/library/busybox:latest

    @property
    def host(self) -> str:
        """The registry as named in the reference (``docker.io``, ``localhost:5000``)."""
        return self.reference.domain

    @property
    def endpoint(self) -> str:
        """The ``host[:port]`` the API requests go to."""
        return endpoint_of(self.reference.domain)

    @property
    def repository(self) -> str:
        return self.reference.path

    @property
    def object(self) -> str:
        """What ``/manifests/<object>`` names: the digest if there is one, else the tag."""
        if self.reference.digest is not None:
            return str(self.reference.digest)
        return self.reference.tag or "latest"

    def __str__(self) -> str:
        return str(self.reference)


def resolve(text: str | Reference) -> Target:
    """Parse and complete ``text``; :class:`InvalidArgument` for a malformed reference."""
    reference = text if isinstance(text, Reference) else parse_reference(text)
    return Target(reference)


def endpoint_of(host: str) -> str:
    """The API host of registry ``host``: Docker Hub's is not ``docker.io`` itself."""
    return DOCKER_HUB_ENDPOINT if host in _HUB_ALIASES else host


def split_host(host: str) -> tuple[str, int | None]:
    """``("127.0.0.1", 5000)`` from ``127.0.0.1:5000``; IPv6 in brackets: ``[::1]:5000``."""
    if host.startswith("["):
        end = host.find("]")
        if end < 0:
            raise InvalidArgument(f"invalid registry host: {host!r}")
        name, rest = host[1:end], host[end + 1 :]
        if rest and not (rest.startswith(":") and rest[1:].isdigit()):
            raise InvalidArgument(f"invalid registry host: {host!r}")
        return name, int(rest[1:]) if rest else None
    name, colon, port = host.rpartition(":")
    if colon and port.isdigit() and ":" not in name:
        return name, int(port)
    return host, None


def normalize_server(address: str) -> str:
    """The registry host that ``address`` means: ``docker.io`` for Docker Hub's aliases.

    Takes what ``docker login`` and config.json keys hold: a bare ``host[:port]``, or a
    URL with scheme and path (``https://index.docker.io/v1/``). Empty means Docker Hub.
    """
    text = address.strip()
    if not text:
        return DEFAULT_DOMAIN
    for scheme in ("https://", "http://"):
        if text.lower().startswith(scheme):
            text = text[len(scheme) :]
            break
    host = text.split("/", 1)[0]
    if not host or any(c.isspace() for c in host) or "@" in host:
        raise InvalidArgument(f"invalid registry address: {address!r}")
    host = host.lower()
    return DEFAULT_DOMAIN if host in _HUB_ALIASES else host


class HostPolicy:
    """Which registries may be spoken to without TLS verification, or over plain HTTP.

    ``insecure`` holds dockerd's ``--insecure-registry`` values: ``host[:port]`` or a
    CIDR (``10.0.0.0/8``) that covers a registry's IP address. Loopback registries are
    always insecure, as Docker treats ``127.0.0.0/8``.
    """

    def __init__(self, insecure: Iterable[str] = ()) -> None:
        self._hosts: set[str] = set()
        self._networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for entry in insecure:
            entry = entry.strip()
            if not entry:
                continue
            if "/" in entry and "://" not in entry:
                try:
                    self._networks.append(ipaddress.ip_network(entry, strict=False))
                    continue
                except ValueError:
                    pass
            self._hosts.add(normalize_server(entry))

    @property
    def insecure(self) -> tuple[str, ...]:
        return tuple(sorted(self._hosts)) + tuple(str(n) for n in self._networks)

    def is_insecure(self, host: str) -> bool:
        host = host.lower()
        if host in self._hosts:
            return True
        name, _ = split_host(host)
        if name in self._hosts or name == "localhost":
            return True
        try:
            address = ipaddress.ip_address(name)
        except ValueError:
            return False
        return address.is_loopback or any(address in net for net in self._networks)
