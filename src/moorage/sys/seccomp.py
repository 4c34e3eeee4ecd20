"""Seccomp filters: an OCI-style filter description compiled and loaded with libseccomp.

This module owns Moorage's binding of libseccomp (``libseccomp.so.2``, through ctypes)
and the translation of an OCI ``linux.seccomp`` object into a filter. It does not
read OCI documents: callers convert theirs into the plain records below, so this
package stays free of ``moorage.oci``.

Compiling and loading are separate on purpose. :func:`compile_filter` does all the
work that allocates and may fail (name resolution, rule building) while the process
can still do anything; :meth:`CompiledFilter.load` is then a single libseccomp call,
made as late as possible, after which the process may be unable to do much else::

    spec = FilterSpec(
        default_action="SCMP_ACT_ERRNO",
        rules=(Rule(names=("read", "write", "exit_group"), action="SCMP_ACT_ALLOW"),),
    )
    with compile_filter(spec) as compiled:
        for name in compiled.skipped:
            log.debug("seccomp: unknown syscall %s skipped", name)
        prctl(PR_SET_NO_NEW_PRIVS, 1)   # or hold CAP_SYS_ADMIN
        compiled.load()

The semantics follow runc, so a profile behaves the same under either runtime:

- syscall names libseccomp does not know are skipped, not an error (a profile lists
  syscalls of newer kernels); they are reported in :attr:`CompiledFilter.skipped`;
- a rule whose action equals the default action is skipped (libseccomp refuses it);
- several conditions on the same argument index in one rule are OR-ed (one
  libseccomp rule per condition, since libseccomp compares each argument at most once
  per rule); otherwise all conditions of a rule are AND-ed in one libseccomp rule;
- ``SCMP_ACT_ERRNO`` and ``SCMP_ACT_TRACE`` without ``errno_ret`` use EPERM; for
  other actions ``errno_ret`` is ignored;
- the filter does not set no_new_privs itself (libseccomp would by default): whether
  a process gets it is the caller's decision (``process.noNewPrivileges``), so loading
  needs either no_new_privs or CAP_SYS_ADMIN.

Errors libseccomp returns (negative errno values) become
:class:`~moorage.errors.InvalidArgument` when the input was at fault and
:class:`~moorage.errors.FailedPrecondition` otherwise, naming the call and the
syscall: ``seccomp_rule_add: syscall "clone": invalid argument``.
"""

import ctypes
import errno
import os
import threading
import weakref
from collections.abc import Callable
from typing import Any, Final, NamedTuple, Self

from moorage.errors import FailedPrecondition, InvalidArgument, NotSupported

__all__ = [
    "ArgCondition",
    "CompiledFilter",
    "FilterSpec",
    "Rule",
    "compile_filter",
    "is_available",
    "libseccomp_version",
    "supported_actions",
    "supported_architectures",
    "supported_operators",
]

_LIBRARY_NAME: Final = "libseccomp.so.2"
_MAX_ARGS: Final = 6
_MAX_U64: Final = (1 << 64) - 1
_MAX_RET_DATA: Final = 0xFFFF  # the action's 16-bit data field (errno or trace message)


class ArgCondition(NamedTuple):
    """A comparison of syscall argument ``index`` (0-5), as in OCI ``args``.

    For ``SCMP_CMP_MASKED_EQ``, ``value`` is the mask and ``value_two`` the value the
    masked argument must equal; the other operators compare against ``value`` alone.
    """

    index: int  # type: ignore[assignment]  # the OCI name; shadows tuple.index
    value: int
    value_two: int
    op: str


class Rule(NamedTuple):
    """One OCI ``syscalls`` entry: the action for the named syscalls when ``args`` match."""

    names: tuple[str, ...]
    action: str
    errno_ret: int | None = None
    args: tuple[ArgCondition, ...] = ()


class FilterSpec(NamedTuple):
    """An OCI ``linux.seccomp`` object.

    ``architectures`` are added to the native one, which is always in the filter.
    """

    default_action: str
    default_errno_ret: int | None = None
    architectures: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()
    rules: tuple[Rule, ...] = ()


# seccomp.h: SCMP_ACT_*; ERRNO, TRACE and TRAP carry 16 bits of data in the low half.
_ACT_KILL_PROCESS: Final = 0x80000000
_ACT_KILL_THREAD: Final = 0x00000000
_ACT_TRAP: Final = 0x00030000
_ACT_ERRNO: Final = 0x00050000
_ACT_TRACE: Final = 0x7FF00000
_ACT_LOG: Final = 0x7FFC0000
_ACT_ALLOW: Final = 0x7FFF0000

_ACTIONS: Final[dict[str, int]] = {
    "SCMP_ACT_KILL": _ACT_KILL_THREAD,
    "SCMP_ACT_KILL_PROCESS": _ACT_KILL_PROCESS,
    "SCMP_ACT_KILL_THREAD": _ACT_KILL_THREAD,
    "SCMP_ACT_TRAP": _ACT_TRAP,
    "SCMP_ACT_ERRNO": _ACT_ERRNO,
    "SCMP_ACT_TRACE": _ACT_TRACE,
    "SCMP_ACT_ALLOW": _ACT_ALLOW,
    "SCMP_ACT_LOG": _ACT_LOG,
}
# Valid OCI actions this binding does not implement (user notification needs a
# listener fd passed to a monitor).
_UNSUPPORTED_ACTIONS: Final = frozenset({"SCMP_ACT_NOTIFY"})

# seccomp.h: enum scmp_compare
_OPERATORS: Final[dict[str, int]] = {
    "SCMP_CMP_NE": 1,
    "SCMP_CMP_LT": 2,
    "SCMP_CMP_LE": 3,
    "SCMP_CMP_EQ": 4,
    "SCMP_CMP_GE": 5,
    "SCMP_CMP_GT": 6,
    "SCMP_CMP_MASKED_EQ": 7,
}
_CMP_MASKED_EQ: Final = 7

# linux/audit.h: AUDIT_ARCH_* = EM_* | 64-bit (0x80000000) | little-endian (0x40000000)
# (| 0x20000000 for the MIPS n32 convention). libseccomp uses these as its arch tokens;
# the second element is libseccomp's own name for the arch, used to ask the installed
# library whether it supports it.
_ARCHITECTURES: Final[dict[str, tuple[int, str]]] = {
    "SCMP_ARCH_X86": (0x40000003, "x86"),
    "SCMP_ARCH_X86_64": (0xC000003E, "x86_64"),
    "SCMP_ARCH_X32": (0x4000003E, "x32"),
    "SCMP_ARCH_ARM": (0x40000028, "arm"),
    "SCMP_ARCH_AARCH64": (0xC00000B7, "aarch64"),
    "SCMP_ARCH_LOONGARCH64": (0xC0000102, "loongarch64"),
    "SCMP_ARCH_M68K": (0x00000004, "m68k"),
    "SCMP_ARCH_MIPS": (0x00000008, "mips"),
    "SCMP_ARCH_MIPS64": (0x80000008, "mips64"),
    "SCMP_ARCH_MIPS64N32": (0xA0000008, "mips64n32"),
    "SCMP_ARCH_MIPSEL": (0x40000008, "mipsel"),
    "SCMP_ARCH_MIPSEL64": (0xC0000008, "mipsel64"),
    "SCMP_ARCH_MIPSEL64N32": (0xE0000008, "mipsel64n32"),
    "SCMP_ARCH_PPC": (0x00000014, "ppc"),
    "SCMP_ARCH_PPC64": (0x80000015, "ppc64"),
    "SCMP_ARCH_PPC64LE": (0xC0000015, "ppc64le"),
    "SCMP_ARCH_S390": (0x00000016, "s390"),
    "SCMP_ARCH_S390X": (0x80000016, "s390x"),
    "SCMP_ARCH_PARISC": (0x0000000F, "parisc"),
    "SCMP_ARCH_PARISC64": (0x8000000F, "parisc64"),
    "SCMP_ARCH_RISCV64": (0xC00000F3, "riscv64"),
    "SCMP_ARCH_SH": (0x4000002A, "sh"),
    "SCMP_ARCH_SHEB": (0x0000002A, "sheb"),
}

# seccomp.h: enum scmp_filter_attr
_FLTATR_CTL_NNP: Final = 3
_FLTATR_CTL_TSYNC: Final = 4
_FLTATR_CTL_LOG: Final = 6
_FLTATR_CTL_SSB: Final = 7
_FLTATR_API_SYSRAWRC: Final = 9

_FLAGS: Final[dict[str, int]] = {
    "SECCOMP_FILTER_FLAG_TSYNC": _FLTATR_CTL_TSYNC,
    "SECCOMP_FILTER_FLAG_LOG": _FLTATR_CTL_LOG,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": _FLTATR_CTL_SSB,
}
# Valid kernel flags that only make sense with user notification, which is not here.
_UNSUPPORTED_FLAGS: Final = frozenset(
    {"SECCOMP_FILTER_FLAG_NEW_LISTENER", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"}
)

_NR_SCMP_ERROR: Final = -1

# Errors that say the filter description is wrong rather than the system unready.
_INPUT_ERRNOS: Final = frozenset({errno.EINVAL, errno.EEXIST, errno.EDOM})


class _ArgCmp(ctypes.Structure):
    """struct scmp_arg_cmp."""

    _fields_ = (
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    )


class _Version(ctypes.Structure):
    """struct scmp_version."""

    _fields_ = (("major", ctypes.c_uint), ("minor", ctypes.c_uint), ("micro", ctypes.c_uint))


class _Libseccomp:
    """The libseccomp functions this module calls, with their C signatures."""

    def __init__(self, cdll: ctypes.CDLL) -> None:
        c_ctx = ctypes.c_void_p
        c_args = ctypes.POINTER(_ArgCmp)

        def bind(name: str, restype: Any, *argtypes: Any) -> Any:
            func = getattr(cdll, name)
            func.restype = restype
            func.argtypes = argtypes
            return func

        self.init = bind("seccomp_init", c_ctx, ctypes.c_uint32)
        self.release = bind("seccomp_release", None, c_ctx)
        self.load = bind("seccomp_load", ctypes.c_int, c_ctx)
        self.arch_add = bind("seccomp_arch_add", ctypes.c_int, c_ctx, ctypes.c_uint32)
        self.arch_native = bind("seccomp_arch_native", ctypes.c_uint32)
        self.arch_resolve_name = bind("seccomp_arch_resolve_name", ctypes.c_uint32, ctypes.c_char_p)
        self.attr_set = bind("seccomp_attr_set", ctypes.c_int, c_ctx, ctypes.c_int, ctypes.c_uint32)
        self.syscall_resolve_name = bind(
            "seccomp_syscall_resolve_name", ctypes.c_int, ctypes.c_char_p
        )
        rule_argtypes = (c_ctx, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint, c_args)
        self.rule_add_array = bind("seccomp_rule_add_array", ctypes.c_int, *rule_argtypes)
        self.rule_add_exact_array = bind(
            "seccomp_rule_add_exact_array", ctypes.c_int, *rule_argtypes
        )
        self.export_bpf = bind("seccomp_export_bpf", ctypes.c_int, c_ctx, ctypes.c_int)
        self.export_pfc = bind("seccomp_export_pfc", ctypes.c_int, c_ctx, ctypes.c_int)
        self.version = bind("seccomp_version", ctypes.POINTER(_Version))


_library: _Libseccomp | None = None
_library_lock = threading.Lock()


def _lib() -> _Libseccomp:
    """libseccomp, loaded on first use so importing this module never needs it."""
    global _library
    with _library_lock:
        if _library is None:
            try:
                cdll = ctypes.CDLL(_LIBRARY_NAME, use_errno=True)
            except OSError as exc:
                raise FailedPrecondition("libseccomp not found: install libseccomp2") from exc
            _library = _Libseccomp(cdll)
        return _library


def _check(rc: int, call: str, subject: str | None = None, edom: str | None = None) -> None:
    """Raise for a negative errno returned by libseccomp.

    ``edom`` replaces strerror(EDOM), which libseccomp uses for its own meanings.
    """
    if rc >= 0:
        return
    err = -rc
    where = f"{call}: {subject}" if subject else call
    reason = edom if err == errno.EDOM and edom else os.strerror(err).lower()
    message = f"{where}: {reason}"
    if err in _INPUT_ERRNOS:
        raise InvalidArgument(message)
    raise FailedPrecondition(message)


def _ret_data(value: int | None, what: str) -> int:
    if value is None:
        return errno.EPERM
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_RET_DATA:
        raise InvalidArgument(f"{what} {value!r} out of range 0-{_MAX_RET_DATA}")
    return value


def _action(name: str, errno_ret: int | None, what: str) -> int:
    """The libseccomp action value for an OCI action name."""
    if name in _UNSUPPORTED_ACTIONS:
        raise NotSupported(f'seccomp action "{name}" is not supported')
    try:
        base = _ACTIONS[name]
    except KeyError:
        raise InvalidArgument(f'unknown seccomp action "{name}"') from None
    if base in (_ACT_ERRNO, _ACT_TRACE):
        return base | _ret_data(errno_ret, what)
    return base


def _arg_cmp(cond: ArgCondition, syscalls: str) -> _ArgCmp:
    try:
        op = _OPERATORS[cond.op]
    except KeyError:
        raise InvalidArgument(f'unknown seccomp operator "{cond.op}"') from None
    if isinstance(cond.index, bool) or not isinstance(cond.index, int):
        raise InvalidArgument(
            f"seccomp rule for {syscalls}: argument index {cond.index!r} is not an integer"
        )
    if not 0 <= cond.index < _MAX_ARGS:
        raise InvalidArgument(
            f"seccomp rule for {syscalls}: argument index {cond.index} out of range 0-5"
        )
    for value in (cond.value, cond.value_two):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_U64:
            raise InvalidArgument(
                f"seccomp rule for {syscalls}: argument value {value!r} is not a 64-bit unsigned"
            )
    # libseccomp reads datum_b only for MASKED_EQ; zero it otherwise so a stray
    # value_two cannot matter.
    value_two = cond.value_two if op == _CMP_MASKED_EQ else 0
    return _ArgCmp(cond.index, op, cond.value, value_two)


def _arch_token(name: str, lib: _Libseccomp) -> int:
    try:
        token, lib_name = _ARCHITECTURES[name]
    except KeyError:
        raise InvalidArgument(f'unknown seccomp architecture "{name}"') from None
    if lib.arch_resolve_name(lib_name.encode()) != token:
        raise NotSupported(
            f'seccomp architecture "{name}" is not supported by libseccomp {libseccomp_version()}'
        )
    return token


def _condition_groups(conds: list[_ArgCmp]) -> list[list[_ArgCmp]]:
    """How a rule's conditions become libseccomp rules (runc's semantics).

    No conditions: one unconditional rule. All on distinct arguments: one rule that
    ANDs them. Any argument compared twice: one rule per condition, so they OR.
    """
    indexes = [c.arg for c in conds]
    if len(set(indexes)) < len(indexes):
        return [[c] for c in conds]
    return [conds]


class CompiledFilter:
    """A built libseccomp filter, ready to load; owns the libseccomp context.

    Release it with :meth:`release` or a ``with`` block; a forgotten one is released
    when garbage collected.
    """

    def __init__(self, lib: _Libseccomp, ctx: int, skipped: tuple[str, ...]) -> None:
        self._lib = lib
        # Bound now so load() is one ctypes call with nothing to look up or convert.
        self._seccomp_load: Callable[[ctypes.c_void_p], int] = lib.load
        self._ctx: ctypes.c_void_p | None = ctypes.c_void_p(ctx)
        self._finalizer = weakref.finalize(self, lib.release, self._ctx)
        self.skipped: tuple[str, ...] = skipped
        """Syscall names libseccomp does not know, skipped as runc does; for logging."""

    def _live_ctx(self) -> ctypes.c_void_p:
        if self._ctx is None:
            raise FailedPrecondition("seccomp filter already released")
        return self._ctx

    def load(self) -> None:
        """Load the filter into the kernel for the calling thread (all threads with TSYNC).

        Needs no_new_privs or CAP_SYS_ADMIN. Once loaded, the filter cannot be removed;
        the context stays valid and may be released afterwards.
        """
        rc = self._seccomp_load(self._live_ctx())
        if rc < 0:
            _check(rc, "seccomp_load")

    def export_bpf(self, fd: int) -> None:
        """Write the filter as raw BPF (``struct sock_filter`` array) to ``fd``."""
        _check(self._lib.export_bpf(self._live_ctx(), fd), "seccomp_export_bpf")

    def export_pfc(self, fd: int) -> None:
        """Write libseccomp's human-readable pseudo filter code to ``fd``, for debugging."""
        _check(self._lib.export_pfc(self._live_ctx(), fd), "seccomp_export_pfc")

    def release(self) -> None:
        """Free the libseccomp context; a loaded filter stays in force. Idempotent."""
        self._finalizer()
        self._ctx = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def compile_filter(spec: FilterSpec, *, exact: bool = False) -> CompiledFilter:
    """Build the filter ``spec`` describes, without loading it.

    Rules are added with ``seccomp_rule_add_array``, which lets libseccomp adapt a rule
    to each architecture in the filter (socketcall and ipc multiplexing on x86, syscalls
    an architecture lacks). ``exact=True`` uses ``seccomp_rule_add_exact_array``
    instead, which fails rather than adapt: only for checking that a profile means
    literally what it says on every architecture listed.

    Raises InvalidArgument for unknown action, operator, architecture or flag names and
    out-of-range values, NotSupported for SCMP_ACT_NOTIFY and architectures the
    installed libseccomp lacks, FailedPrecondition when libseccomp is missing or fails.
    """
    # Validate every name before touching libseccomp so bad input fails the same way
    # whether or not the library is installed.
    default = _action(spec.default_action, spec.default_errno_ret, "default errno_ret")
    attrs = []
    for flag in spec.flags:
        if flag in _UNSUPPORTED_FLAGS:
            raise NotSupported(f'seccomp flag "{flag}" is not supported')
        try:
            attrs.append((_FLAGS[flag], flag))
        except KeyError:
            raise InvalidArgument(f'unknown seccomp flag "{flag}"') from None
    for arch in spec.architectures:
        if arch not in _ARCHITECTURES:
            raise InvalidArgument(f'unknown seccomp architecture "{arch}"')
    planned: list[tuple[Rule, int, list[list[_ArgCmp]]]] = []
    for rule in spec.rules:
        label = ", ".join(f'"{n}"' for n in rule.names) or "no syscalls"
        action = _action(rule.action, rule.errno_ret, f"errno_ret for {label}")
        groups = _condition_groups([_arg_cmp(c, label) for c in rule.args])
        planned.append((rule, action, groups))

    lib = _lib()
    arches = [(_arch_token(arch, lib), arch) for arch in spec.architectures]
    ctx = lib.init(default)
    if not ctx:
        raise FailedPrecondition(f'seccomp_init: default action "{spec.default_action}" failed')
    compiled = CompiledFilter(lib, ctx, ())
    try:
        skipped = _build(lib, compiled._live_ctx(), default, arches, attrs, planned, exact)
    except BaseException:
        compiled.release()
        raise
    compiled.skipped = skipped
    return compiled


def _build(
    lib: _Libseccomp,
    ctx: ctypes.c_void_p,
    default: int,
    arches: list[tuple[int, str]],
    attrs: list[tuple[int, str]],
    planned: list[tuple[Rule, int, list[list[_ArgCmp]]]],
    exact: bool,
) -> tuple[str, ...]:
    # no_new_privs is the caller's choice (OCI process.noNewPrivileges), not the filter's.
    _check(lib.attr_set(ctx, _FLTATR_CTL_NNP, 0), "seccomp_attr_set", "no_new_privs")
    # Report the kernel's own errno from seccomp_load instead of a generic ECANCELED;
    # older libseccomp lacks the attribute, which only costs message detail.
    lib.attr_set(ctx, _FLTATR_API_SYSRAWRC, 1)
    for attr, flag in attrs:
        _check(lib.attr_set(ctx, attr, 1), "seccomp_attr_set", f'flag "{flag}"')
    for token, arch in arches:
        rc = lib.arch_add(ctx, token)
        if rc != -errno.EEXIST:  # the native arch is in every new filter already
            _check(
                rc,
                "seccomp_arch_add",
                f'architecture "{arch}"',
                edom="byte order differs from the filter's other architectures",
            )

    add = lib.rule_add_exact_array if exact else lib.rule_add_array
    call = "seccomp_rule_add_exact" if exact else "seccomp_rule_add"
    skipped: list[str] = []
    for rule, action, groups in planned:
        if action == default:
            continue
        for name in rule.names:
            number = lib.syscall_resolve_name(name.encode())
            if number == _NR_SCMP_ERROR:
                if name not in skipped:
                    skipped.append(name)
                continue
            for group in groups:
                array = (_ArgCmp * len(group))(*group)
                rc = add(ctx, action, number, len(group), array)
                _check(rc, call, f'syscall "{name}"', edom="rule cannot be added exactly")
    return tuple(skipped)


def libseccomp_version() -> str:
    """The installed libseccomp's version, ``"2.5.4"``."""
    v = _lib().version().contents
    return f"{v.major}.{v.minor}.{v.micro}"


def supported_actions() -> list[str]:
    """OCI action names :func:`compile_filter` accepts."""
    return sorted(_ACTIONS)


def supported_operators() -> list[str]:
    """OCI operator names :func:`compile_filter` accepts."""
    return sorted(_OPERATORS)


def supported_architectures() -> list[str]:
    """OCI architecture names both this binding and the installed libseccomp know."""
    lib = _lib()
    return sorted(
        name
        for name, (token, lib_name) in _ARCHITECTURES.items()
        if lib.arch_resolve_name(lib_name.encode()) == token
    )


def is_available() -> bool:
    """Whether filters can be loaded here: libseccomp loads and the kernel has seccomp.

    A kernel built with CONFIG_SECCOMP shows a ``Seccomp:`` line in /proc/self/status.
    """
    try:
        _lib()
    except FailedPrecondition:
        return False
    try:
        with open("/proc/self/status", encoding="utf-8") as f:
            return any(line.startswith("Seccomp:") for line in f)
    except OSError:
        return False
