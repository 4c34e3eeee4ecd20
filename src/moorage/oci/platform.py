"""Platforms (``linux/arm64/v8``): what an image runs on, and picking one from an index.

This module owns the platform record, its JSON form (the ``platform`` of an index entry),
the names people type (``--platform linux/amd64``), the host's own platform, and the
rules for which image variants a machine can run:

- architecture names are normalised as Go's ``GOARCH`` spells them (``x86_64`` ->
  ``amd64``, ``aarch64`` -> ``arm64``), since that is what images are labelled with;
- variants of ``arm``, ``arm64`` and ``amd64`` are ordered: a machine runs its own
  variant and every lower one (an armv7 board runs v6 and v5 images, an x86-64-v3 CPU
  runs v2 images); other architectures need the same variant, or none;
- an absent variant means the architecture's default: ``v7`` for arm, ``v8`` for arm64,
  ``v1`` (written as none) for amd64.

Only the same architecture matches: an amd64 host is not offered 386 images.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from moorage.errors import InvalidArgument, NotFound
from moorage.oci._json import Obj, put
from moorage.oci._jsonpath import At, quote

if TYPE_CHECKING:
    from moorage.oci.descriptor import Descriptor

__all__ = [
    "Platform",
    "host_platform",
    "matches",
    "normalize",
    "parse_platform",
    "platform_from_dict",
    "select_manifest",
]


class Platform(NamedTuple):
    os: str
    architecture: str
    variant: str | None = None
    os_version: str | None = None
    os_features: tuple[str, ...] = ()

    def __str__(self) -> str:
        """``os/architecture[/variant]``, the form ``parse_platform`` reads."""
        parts = [self.os, self.architecture]
        if self.variant:
            parts.append(self.variant)
        return "/".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """The OCI JSON form, keys in the spec's order, empty ones left out."""
        out: dict[str, Any] = {"architecture": self.architecture, "os": self.os}
        put(out, "os.version", self.os_version)
        put(out, "os.features", self.os_features)
        put(out, "variant", self.variant)
        return out


def platform_from_dict(data: object, where: str = "platform") -> Platform:
    """Validate a decoded platform object; errors start with ``where``."""
    return platform_from_obj(Obj(data, At(where)))


def platform_from_obj(o: Obj) -> Platform:
    return Platform(
        os=o.string("os"),
        architecture=o.string("architecture"),
        variant=o.opt_string("variant"),
        os_version=o.opt_string("os.version"),
        os_features=o.strings("os.features"),
    )


_COMPONENT = re.compile(r"[A-Za-z0-9_.-]+")


def parse_platform(text: str) -> Platform:
    """``"linux/amd64"`` or ``"linux/arm64/v8"`` as a :class:`Platform`, lower-cased.

    The result is kept as written (``linux/x86_64`` stays ``x86_64``); matching
    normalises. Both os and architecture are required: a bare ``linux`` would mean the
    host's architecture, which is the caller's business to supply.
    """
    parts = text.split("/")
    if not 2 <= len(parts) <= 3 or not all(_COMPONENT.fullmatch(p) for p in parts):
        raise InvalidArgument(f"invalid platform: {quote(text)}: want os/architecture[/variant]")
    os_name, architecture, *variant = (p.lower() for p in parts)
    return Platform(os=os_name, architecture=architecture, variant=variant[0] if variant else None)


# machine or alias -> (GOARCH, implied variant)
_ARCHITECTURES: dict[str, tuple[str, str | None]] = {
    "x86_64": ("amd64", None),
    "x86-64": ("amd64", None),
    "amd64": ("amd64", None),
    "aarch64": ("arm64", None),
    "arm64": ("arm64", None),
    "armv8l": ("arm", "v8"),
    "armv7l": ("arm", "v7"),
    "armv7": ("arm", "v7"),
    "armhf": ("arm", "v7"),
    "armv6l": ("arm", "v6"),
    "armel": ("arm", "v6"),
    "armv5tel": ("arm", "v5"),
    "armv5l": ("arm", "v5"),
    "i386": ("386", None),
    "i486": ("386", None),
    "i586": ("386", None),
    "i686": ("386", None),
    "x86": ("386", None),
    "ppc64le": ("ppc64le", None),
    "ppc64": ("ppc64", None),
    "s390x": ("s390x", None),
    "riscv64": ("riscv64", None),
    "loongarch64": ("loong64", None),
    "mips64": ("mips64", None),
}
_OS_NAMES = {"macos": "darwin", "win32": "windows"}
_DEFAULT_VARIANT = {"arm": "v7", "arm64": "v8"}
# The variants that carry no information: amd64's baseline is written as no variant.
_BASELINE_VARIANT = {"amd64": "v1"}
_VARIANT = re.compile(r"v?(\d+)(?:\.(\d+))?")


def normalize(platform: Platform) -> Platform:
    """``platform`` with the canonical names and default variant (see the module doc)."""
    os_name = platform.os.lower()
    os_name = _OS_NAMES.get(os_name, os_name)
    arch = platform.architecture.lower()
    arch, implied = _ARCHITECTURES.get(arch, (arch, None))
    variant = (platform.variant or "").lower() or implied
    if variant is not None and arch in ("arm", "arm64", "amd64") and variant.isdigit():
        variant = "v" + variant  # "linux/arm/7" is how some images spell it
    if variant is None:
        variant = _DEFAULT_VARIANT.get(arch)
    if variant is not None and _BASELINE_VARIANT.get(arch) == variant:
        variant = None
    return platform._replace(os=os_name, architecture=arch, variant=variant)


def host_platform() -> Platform:
    """The platform of this machine, normalised (``linux/arm64/v8`` on a Raspberry Pi 4)."""
    os_name = "linux" if sys.platform.startswith("linux") else sys.platform
    return normalize(Platform(os=os_name, architecture=os.uname().machine))


def _variant_rank(architecture: str, variant: str | None) -> tuple[int, int] | None:
    """The order of ``variant`` among its architecture's, None when it has no order."""
    if architecture not in ("arm", "arm64", "amd64"):
        return None
    if variant is None:
        return (1, 0) if architecture == "amd64" else None
    found = _VARIANT.fullmatch(variant)
    return None if found is None else (int(found[1]), int(found[2] or 0))


def _distance(want: Platform, have: Platform) -> int | None:
    """How far below ``want`` the normalised ``have`` is; None when it cannot run."""
    if (want.os, want.architecture) != (have.os, have.architecture):
        return None
    if want.variant == have.variant:
        return 0
    want_rank = _variant_rank(want.architecture, want.variant)
    have_rank = _variant_rank(have.architecture, have.variant)
    if want_rank is not None and have_rank is not None:
        if have_rank > want_rank:
            return None
        return (want_rank[0] - have_rank[0]) * 100 + want_rank[1] - have_rank[1]
    # Unordered variants: an image that names none is built for the whole architecture.
    return 1 if have.variant is None else None


def matches(want: Platform, have: Platform) -> bool:
    """Whether a machine of platform ``want`` can run an image built for ``have``."""
    return _distance(normalize(want), normalize(have)) is not None


def select_manifest(manifests: Sequence[Descriptor], want: Platform) -> Descriptor:
    """The entry of an index that best fits ``want``.

    The exact variant wins, then the nearest lower one (arm v6 before v5 on an armv7
    host), then the earlier entry. Entries without a platform never match: in
    practice they are attestations and other artifacts. :class:`NotFound` when none fits.
    """
    wanted = normalize(want)
    best: int | None = None
    chosen: Descriptor | None = None
    for descriptor in manifests:
        if descriptor.platform is None:
            continue
        distance = _distance(wanted, normalize(descriptor.platform))
        # Strictly nearer only: on a tie the earlier entry stays.
        if distance is not None and (best is None or distance < best):
            best, chosen = distance, descriptor
    if chosen is None:
        raise NotFound(f"no manifest for platform {want} in index")
    return chosen
