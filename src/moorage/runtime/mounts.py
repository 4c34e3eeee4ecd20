"""Mount options as data: parse an OCI mount's option list into what mount(2) takes."""

from moorage.errors import InvalidArgument, NotSupported
from moorage.sys import libc

# option -> (flag, True to set / False to clear)
_FLAGS: dict[str, tuple[int, bool]] = {
    "ro": (libc.MS_RDONLY, True),
    "rw": (libc.MS_RDONLY, False),
    "nosuid": (libc.MS_NOSUID, True),
    "suid": (libc.MS_NOSUID, False),
    "nodev": (libc.MS_NODEV, True),
    "dev": (libc.MS_NODEV, False),
    "noexec": (libc.MS_NOEXEC, True),
    "exec": (libc.MS_NOEXEC, False),
    "sync": (libc.MS_SYNCHRONOUS, True),
    "async": (libc.MS_SYNCHRONOUS, False),
    "dirsync": (libc.MS_DIRSYNC, True),
    "remount": (libc.MS_REMOUNT, True),
    "mand": (libc.MS_MANDLOCK, True),
    "nomand": (libc.MS_MANDLOCK, False),
    "atime": (libc.MS_NOATIME, False),
    "noatime": (libc.MS_NOATIME, True),
    "diratime": (libc.MS_NODIRATIME, False),
    "nodiratime": (libc.MS_NODIRATIME, True),
    "bind": (libc.MS_BIND, True),
    "rbind": (libc.MS_BIND | libc.MS_REC, True),
    "relatime": (libc.MS_RELATIME, True),
    "norelatime": (libc.MS_RELATIME, False),
    "strictatime": (libc.MS_STRICTATIME, True),
    "nostrictatime": (libc.MS_STRICTATIME, False),
    "nosymfollow": (libc.MS_NOSYMFOLLOW, True),
    "symfollow": (libc.MS_NOSYMFOLLOW, False),
    "lazytime": (libc.MS_LAZYTIME, True),
    "nolazytime": (libc.MS_LAZYTIME, False),
    "silent": (libc.MS_SILENT, True),
    "loud": (libc.MS_SILENT, False),
}

_PROPAGATION: dict[str, int] = {
    "private": libc.MS_PRIVATE,
    "rprivate": libc.MS_PRIVATE | libc.MS_REC,
    "shared": libc.MS_SHARED,
    "rshared": libc.MS_SHARED | libc.MS_REC,
    "slave": libc.MS_SLAVE,
    "rslave": libc.MS_SLAVE | libc.MS_REC,
    "unbindable": libc.MS_UNBINDABLE,
    "runbindable": libc.MS_UNBINDABLE | libc.MS_REC,
}

# Options that change how the runtime mounts rather than what mount(2) gets.
_EXTENSIONS = frozenset({"tmpcopyup"})
_UNSUPPORTED = frozenset({"idmap", "ridmap", "rro", "rrw", "rnosuid", "rnodev", "rnoexec"})

# Flags a remount may change on a bind mount; the rest come from the first mount.
REMOUNT_FLAGS = (
    libc.MS_RDONLY
    | libc.MS_NOSUID
    | libc.MS_NODEV
    | libc.MS_NOEXEC
    | libc.MS_NOATIME
    | libc.MS_NODIRATIME
    | libc.MS_RELATIME
    | libc.MS_STRICTATIME
    | libc.MS_NOSYMFOLLOW
)


class MountOptions:
    """What one OCI mount's options mean to mount(2). A plain class: this module is
    imported by every container's init, where NamedTuple would import typing."""

    __slots__ = ("data", "extensions", "flags", "propagation")

    def __init__(
        self, flags: int, propagation: tuple[int, ...], data: str, extensions: frozenset[str]
    ) -> None:
        self.flags = flags
        self.propagation = propagation
        self.data = data
        self.extensions = extensions

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MountOptions) and (
            (self.flags, self.propagation, self.data, self.extensions)
            == (other.flags, other.propagation, other.data, other.extensions)
        )

    def __hash__(self) -> int:
        return hash((self.flags, self.propagation, self.data, self.extensions))

    def __repr__(self) -> str:
        return (
            f"MountOptions(flags={self.flags:#x}, propagation={self.propagation}, "
            f"data={self.data!r}, extensions={set(self.extensions)})"
        )

    @property
    def is_bind(self) -> bool:
        return bool(self.flags & libc.MS_BIND)


def parse_options(options: tuple[str, ...] | list[str], where: str = "mount") -> MountOptions:
    flags = 0
    propagation: list[int] = []
    data: list[str] = []
    extensions: set[str] = set()
    for opt in options:
        if opt in _FLAGS:
            bit, on = _FLAGS[opt]
            flags = flags | bit if on else flags & ~bit
        elif opt in _PROPAGATION:
            propagation.append(_PROPAGATION[opt])
        elif opt in _EXTENSIONS:
            extensions.add(opt)
        elif opt in _UNSUPPORTED:
            raise NotSupported(f"{where}: mount option {opt!r} is not supported")
        elif not opt:
            raise InvalidArgument(f"{where}: empty mount option")
        else:
            data.append(opt)
    return MountOptions(flags, tuple(propagation), ",".join(data), frozenset(extensions))


def propagation_flag(name: str) -> int:
    try:
        return _PROPAGATION[name]
    except KeyError:
        raise InvalidArgument(f"invalid rootfs propagation: {name!r}") from None
