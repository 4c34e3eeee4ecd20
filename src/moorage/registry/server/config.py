"""How a registry server is configured: the settings of ``moor registry serve``."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from moorage.errors import InvalidArgument

__all__ = ["DEFAULT_ADDR", "DEFAULT_ROOT", "ServerConfig", "parse_addr", "parse_upstream"]

DEFAULT_ADDR = "127.0.0.1:5000"
# Apart from the engine's content store: each collector would take the other's blobs
# for garbage.
DEFAULT_ROOT = "/var/lib/moorage/registry"


@dataclass(frozen=True)
class ServerConfig:
    root: Path = Path(DEFAULT_ROOT)
    addr: str = DEFAULT_ADDR
    htpasswd: Path | None = None
    realm: str = "moorage registry"  # of the Basic challenge
    token_realm: str | None = None
    token_service: str | None = None
    token_key: Path | None = None
    token_issuer: str | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    read_only: bool = False
    proxy: str | None = None  # a pull-through cache of this registry URL
    proxy_username: str | None = None
    proxy_password: str | None = None

    def check(self) -> None:
        """InvalidArgument if the settings contradict each other."""
        parse_addr(self.addr)
        token = (self.token_realm, self.token_service, self.token_key)
        if any(v is not None for v in token) and not all(v is not None for v in token):
            raise InvalidArgument(
                "token authentication needs --token-realm, --token-service and --token-key"
            )
        if self.htpasswd is not None and self.token_realm is not None:
            raise InvalidArgument("choose one of --htpasswd and token authentication")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise InvalidArgument("TLS needs both --tls-cert and --tls-key")
        if self.proxy is not None:
            parse_upstream(self.proxy)
        elif self.proxy_username is not None or self.proxy_password is not None:
            raise InvalidArgument("--proxy-username and --proxy-password need --proxy")
        if (self.proxy_username is None) != (self.proxy_password is None):
            raise InvalidArgument(
                "upstream credentials need both --proxy-username and --proxy-password"
            )


def parse_addr(text: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port``; ``:port`` for every interface) -> (host, port)."""
    host, colon, port_text = text.rpartition(":")
    if not colon or not port_text.isdigit() or int(port_text) > 65535:
        raise InvalidArgument(f"invalid address: {text!r} (want host:port)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError as exc:
            raise InvalidArgument(f"invalid address: {text!r}: {exc}") from exc
    elif ":" in host:
        raise InvalidArgument(f"invalid address: {text!r} (write an IPv6 host as [addr]:port)")
    return host or "0.0.0.0", int(port_text)


def parse_upstream(url: str) -> tuple[str, str]:
    """A pull-through cache's upstream, ``http(s)://host[:port]`` -> (scheme, host[:port])."""
    parts = urlsplit(url.strip())
    if "@" in parts.netloc:  # not echoed: it holds a password
        raise InvalidArgument(
            "invalid upstream registry url: credentials go in --proxy-username and "
            "--proxy-password, not the url"
        )
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidArgument(f"invalid upstream registry url: {url!r} (want https://host[:port])")
    if parts.path not in ("", "/", "/v2", "/v2/") or parts.query or parts.fragment:
        raise InvalidArgument(f"invalid upstream registry url: {url!r} (no path: the API is /v2/)")
    return parts.scheme, parts.netloc.lower()
