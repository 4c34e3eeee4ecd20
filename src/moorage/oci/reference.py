"""Image references (``busybox`` -> ``docker.io/library/busybox:latest``).

This module owns the grammar of image names, tags and digests and Docker's rules for
completing what people type:

- the first ``/``-separated component is a registry host only if it contains ``.`` or
  ``:``, is ``localhost``, or has an upper-case letter (a path never may); otherwise the
  registry is ``docker.io``, and ``index.docker.io`` is spelt ``docker.io``;
- a one-component name on docker.io lives under ``library/`` (the official images);
- a name with neither tag nor digest gets the default tag, ``latest``.

:class:`Reference` always holds the completed, canonical form; ``str()`` prints it and
``familiar()`` gives back the short form Docker shows. Parsing the output of either
returns the same reference.

Grammar (host names may be written in any case; everything else is checked as is)::

    reference  := name [":" tag] ["@" digest]
    name       := [domain "/"] component ("/" component)*     at most 255 characters
    domain     := host [":" port]        host: DNS name, IPv4 or "[" IPv6 "]"
    component  := [a-z0-9]+ ((\\.|_|__|-+) [a-z0-9]+)*
    tag        := [A-Za-z0-9_] [A-Za-z0-9_.-]{0,127}
"""

from __future__ import annotations

import re
from typing import NamedTuple

from moorage.errors import InvalidArgument
from moorage.oci._jsonpath import quote
from moorage.oci.digest import Digest, is_valid_digest

__all__ = ["DEFAULT_DOMAIN", "Reference", "parse_reference"]

DEFAULT_DOMAIN = "docker.io"
_LEGACY_DEFAULT_DOMAIN = "index.docker.io"
_OFFICIAL_PREFIX = "library/"
_NAME_MAX = 255

_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG = re.compile(r"[\w][\w.-]{0,127}", re.ASCII)
_DOMAIN_LABEL = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = re.compile(
    rf"(?:{_DOMAIN_LABEL}(?:\.{_DOMAIN_LABEL})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?", re.ASCII
)
_IMAGE_ID = re.compile(r"[a-f0-9]{64}")


class Reference(NamedTuple):
    domain: str
    path: str
    tag: str | None = None
    digest: Digest | None = None

    def __str__(self) -> str:
        """The canonical form: ``docker.io/library/busybox:latest``."""
        return self.name + self._suffix()

    def familiar(self) -> str:
        """The short form Docker shows: ``busybox:latest``, ``user/app:1.0``."""
        first, slash, _ = self.path.partition("/")
        # Docker would print docker.io/foo.com/app as foo.com/app, which then reads back
        # as a name on foo.com; such names keep their domain.
        if self.domain != DEFAULT_DOMAIN or (slash and _looks_like_domain(first)):
            return str(self)
        path = self.path
        remainder = path.removeprefix(_OFFICIAL_PREFIX)
        if remainder != path and "/" not in remainder:
            path = remainder
        return path + self._suffix()

    @property
    def name(self) -> str:
        """``domain/path``, without tag or digest."""
        return f"{self.domain}/{self.path}"

    @property
    def repository(self) -> str:
        """The path within the registry: ``library/busybox``."""
        return self.path

    def with_tag(self, tag: str) -> Reference:
        if not _TAG.fullmatch(tag):
            raise InvalidArgument(f"invalid tag: {quote(tag)}")
        return self._replace(tag=tag)

    def with_digest(self, digest: str) -> Reference:
        if not is_valid_digest(digest):
            raise InvalidArgument(f"invalid digest: {quote(digest)}")
        return self._replace(digest=Digest(digest))

    def _suffix(self) -> str:
        suffix = f":{self.tag}" if self.tag else ""
        return f"{suffix}@{self.digest}" if self.digest else suffix


def _invalid(text: str, reason: str = "") -> InvalidArgument:
    if reason:
        return InvalidArgument(f"invalid reference format: {reason}: {quote(text)}")
    return InvalidArgument(f"invalid reference format: {quote(text)}")


def parse_reference(text: str, default_tag: str | None = "latest") -> Reference:
    """Parse and complete ``text`` (``busybox``, ``user/app:1.0``, ``host:5000/x@sha256:..``).

    ``default_tag`` is given to a reference that has neither tag nor digest; pass None
    to leave it without. Errors are :class:`InvalidArgument` ``invalid reference format``.
    """
    # Docker refuses this so that an image id is never mistaken for a name on docker.io.
    if _IMAGE_ID.fullmatch(text):
        raise _invalid(text, "repository name must not be a 64-character hex string")
    rest, at, digest_text = text.partition("@")
    digest: Digest | None = None
    if at:
        if not is_valid_digest(digest_text):
            raise _invalid(text)
        digest = Digest(digest_text)
    # A colon after the last slash starts the tag; one before it belongs to a port.
    name, colon, tag = rest.rpartition(":")
    if not colon or "/" in tag:
        name, tag = rest, ""
    elif not _TAG.fullmatch(tag):
        raise _invalid(text)
    domain, path = _split_domain(name, text)
    if len(domain) + 1 + len(path) > _NAME_MAX:
        raise _invalid(text, f"repository name must not be more than {_NAME_MAX} characters")
    if not tag and digest is None and default_tag is not None:
        tag = default_tag
    return Reference(domain=domain, path=path, tag=tag or None, digest=digest)


def _looks_like_domain(component: str) -> bool:
    return (
        "." in component
        or ":" in component
        or component == "localhost"
        or (component != component.lower())
    )


def _split_domain(name: str, text: str) -> tuple[str, str]:
    first, slash, remainder = name.partition("/")
    if slash and _looks_like_domain(first):
        if not _DOMAIN.fullmatch(first):
            raise _invalid(text)
        domain, path = first, remainder
    else:
        domain, path = DEFAULT_DOMAIN, name
    if domain == _LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    components = path.split("/")
    if not all(_COMPONENT.fullmatch(c) for c in components):
        if all(_COMPONENT.fullmatch(c.lower()) for c in components):
            raise _invalid(text, "repository name must be lowercase")
        raise _invalid(text)
    if domain == DEFAULT_DOMAIN and len(components) == 1:
        path = _OFFICIAL_PREFIX + path
    return domain, path
