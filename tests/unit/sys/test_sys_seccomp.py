"""moorage.sys.seccomp: compiling OCI-style filters, and loading them in forked children.

A loaded filter can never be removed, so every load happens in a child made with
os.fork; the child reports through its exit status or a pipe and the parent asserts.
None of this needs root: children set no_new_privs before loading.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import platform
import resource
import signal
import traceback
from collections.abc import Callable
from pathlib import Path

import pytest

from moorage.errors import FailedPrecondition, InvalidArgument, NotSupported
from moorage.sys import caps, seccomp
from moorage.sys.seccomp import ArgCondition, FilterSpec, Rule

pytestmark = pytest.mark.skipif(
    not seccomp.is_available(), reason="needs libseccomp2 and a kernel with seccomp"
)

_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_DUMPABLE = 4
_CLONE_NEWUTS = 0x04000000
_SIGCHLD = 17
_SYS_CLONE = {"x86_64": 56, "aarch64": 220}

_libc = ctypes.CDLL(None, use_errno=True)


def _run_child(body: Callable[[int], int]) -> tuple[int, bytes]:
    """Run ``body(report_fd)`` in a forked child; return its wait status and report.

    The child always leaves through os._exit (126 and a traceback on the pipe if body
    raised), and the parent always reaps it, killing it first if reading failed.
    """
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        code = 125
        try:
            os.close(read_fd)
            code = body(write_fd)
        except BaseException:
            code = 126
            with contextlib.suppress(BaseException):
                os.write(write_fd, traceback.format_exc().encode())
        finally:
            os._exit(code)
    os.close(write_fd)
    done = False
    try:
        chunks = []
        while chunk := os.read(read_fd, 65536):
            chunks.append(chunk)
        done = True
    finally:
        os.close(read_fd)
        if not done:
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
    return status, b"".join(chunks)


def _exit_code(status: int, report: bytes) -> int:
    assert os.WIFEXITED(status), f"child killed by signal {os.WTERMSIG(status)}: {report!r}"
    code = os.WEXITSTATUS(status)
    assert code not in (125, 126), report.decode(errors="replace")
    return code


def _no_new_privs() -> None:
    if _libc.prctl(_PR_SET_NO_NEW_PRIVS, ctypes.c_ulong(1), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")


def _no_core_dump() -> None:
    # core_pattern may be a plain file name: a SIGSYS death must not litter the cwd.
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    _libc.prctl(_PR_SET_DUMPABLE, ctypes.c_ulong(0), 0, 0, 0)


def _errno_of(call: Callable[[], object]) -> int:
    try:
        call()
    except OSError as exc:
        return exc.errno or -1
    return 0


# Syscalls the interpreter needs between loading a filter and _exit.
_INTERPRETER_SYSCALLS = (
    "read",
    "write",
    "close",
    "exit",
    "exit_group",
    "brk",
    "mmap",
    "munmap",
    "mremap",
    "mprotect",
    "madvise",
    "rt_sigaction",
    "rt_sigprocmask",
    "rt_sigreturn",
    "sigaltstack",
    "futex",
    "fstat",
    "newfstatat",
    "lseek",
    "getrandom",
    "gettid",
    "clock_gettime",
)


# --- compiling: names, validation, semantics ------------------------------------------


def test_libseccomp_version_is_dotted() -> None:
    major, minor, micro = seccomp.libseccomp_version().split(".")
    assert (int(major), int(minor)) >= (2, 0)
    assert int(micro) >= 0


def test_supported_actions_are_the_oci_names_but_notify() -> None:
    assert set(seccomp.supported_actions()) == {
        "SCMP_ACT_KILL",
        "SCMP_ACT_KILL_PROCESS",
        "SCMP_ACT_KILL_THREAD",
        "SCMP_ACT_TRAP",
        "SCMP_ACT_ERRNO",
        "SCMP_ACT_TRACE",
        "SCMP_ACT_ALLOW",
        "SCMP_ACT_LOG",
    }


def test_supported_operators() -> None:
    assert set(seccomp.supported_operators()) == {
        "SCMP_CMP_NE",
        "SCMP_CMP_LT",
        "SCMP_CMP_LE",
        "SCMP_CMP_EQ",
        "SCMP_CMP_GE",
        "SCMP_CMP_GT",
        "SCMP_CMP_MASKED_EQ",
    }


def test_architecture_tokens_match_libseccomp() -> None:
    # An arch is listed only if libseccomp resolves its name to our AUDIT_ARCH token,
    # so a wrong constant shows up as a missing name.
    assert {
        "SCMP_ARCH_X86",
        "SCMP_ARCH_X86_64",
        "SCMP_ARCH_X32",
        "SCMP_ARCH_ARM",
        "SCMP_ARCH_AARCH64",
        "SCMP_ARCH_MIPS",
        "SCMP_ARCH_MIPS64",
        "SCMP_ARCH_MIPS64N32",
        "SCMP_ARCH_MIPSEL",
        "SCMP_ARCH_MIPSEL64",
        "SCMP_ARCH_MIPSEL64N32",
        "SCMP_ARCH_PPC",
        "SCMP_ARCH_PPC64",
        "SCMP_ARCH_PPC64LE",
        "SCMP_ARCH_S390",
        "SCMP_ARCH_S390X",
        "SCMP_ARCH_PARISC",
        "SCMP_ARCH_PARISC64",
        "SCMP_ARCH_RISCV64",
    } <= set(seccomp.supported_architectures())


_LITTLE_ENDIAN_ARCHES = (
    "SCMP_ARCH_X86_64",
    "SCMP_ARCH_X86",
    "SCMP_ARCH_X32",
    "SCMP_ARCH_AARCH64",
    "SCMP_ARCH_ARM",
)


@pytest.mark.skipif(
    platform.machine() not in ("x86_64", "aarch64"), reason="needs a little-endian x86 or arm host"
)
def test_extra_architectures_compile_alongside_the_native_one() -> None:
    # One of these is the native arch, already in the filter: adding it must not fail.
    spec = FilterSpec(
        default_action="SCMP_ACT_ALLOW",
        architectures=_LITTLE_ENDIAN_ARCHES,
        rules=(Rule(names=("mkdir", "socket"), action="SCMP_ACT_ERRNO"),),
    )

    with seccomp.compile_filter(spec) as compiled:
        assert compiled.skipped == ()


@pytest.mark.skipif(
    platform.machine() not in ("x86_64", "aarch64"), reason="needs a little-endian x86 or arm host"
)
def test_architectures_of_mixed_byte_order_are_invalid() -> None:
    spec = FilterSpec("SCMP_ACT_ALLOW", architectures=("SCMP_ARCH_X86", "SCMP_ARCH_S390X"))

    with pytest.raises(
        InvalidArgument,
        match='seccomp_arch_add: architecture "SCMP_ARCH_S390X": byte order differs',
    ):
        seccomp.compile_filter(spec)


def test_architecture_unknown_to_installed_libseccomp_is_not_supported() -> None:
    if "SCMP_ARCH_LOONGARCH64" in seccomp.supported_architectures():
        pytest.skip("this libseccomp supports every architecture Moorage names")
    spec = FilterSpec("SCMP_ACT_ALLOW", architectures=("SCMP_ARCH_LOONGARCH64",))

    with pytest.raises(NotSupported, match='architecture "SCMP_ARCH_LOONGARCH64"'):
        seccomp.compile_filter(spec)


def test_unknown_syscall_names_are_skipped_and_reported() -> None:
    spec = FilterSpec(
        default_action="SCMP_ACT_ALLOW",
        rules=(
            Rule(names=("getpid", "no_such_syscall_x"), action="SCMP_ACT_ERRNO"),
            Rule(names=("no_such_syscall_y", "no_such_syscall_x"), action="SCMP_ACT_LOG"),
        ),
    )

    with seccomp.compile_filter(spec) as compiled:
        assert compiled.skipped == ("no_such_syscall_x", "no_such_syscall_y")


def test_rule_with_the_default_action_is_skipped() -> None:
    # libseccomp refuses such a rule (EACCES); runc drops it, and so do we.
    spec = FilterSpec(
        default_action="SCMP_ACT_ERRNO",
        default_errno_ret=38,
        rules=(
            Rule(names=("getpid",), action="SCMP_ACT_ERRNO", errno_ret=38),
            Rule(names=("getppid",), action="SCMP_ACT_ALLOW"),
        ),
    )

    with seccomp.compile_filter(spec) as compiled:
        assert compiled.skipped == ()


def test_filter_flags_compile() -> None:
    spec = FilterSpec(
        default_action="SCMP_ACT_ALLOW",
        flags=(
            "SECCOMP_FILTER_FLAG_TSYNC",
            "SECCOMP_FILTER_FLAG_LOG",
            "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
        ),
        rules=(Rule(names=("mkdir",), action="SCMP_ACT_ERRNO"),),
    )

    seccomp.compile_filter(spec).release()


def test_export_bpf_writes_whole_instructions(tmp_path: Path) -> None:
    spec = FilterSpec("SCMP_ACT_ALLOW", rules=(Rule(("mkdir",), "SCMP_ACT_ERRNO"),))
    out = tmp_path / "filter.bpf"

    with seccomp.compile_filter(spec) as compiled, out.open("wb") as f:
        compiled.export_bpf(f.fileno())

    size = out.stat().st_size
    assert size > 0
    assert size % 8 == 0  # struct sock_filter is 8 bytes


def test_release_is_idempotent_and_final() -> None:
    compiled = seccomp.compile_filter(FilterSpec("SCMP_ACT_ALLOW"))

    compiled.release()
    compiled.release()

    with pytest.raises(FailedPrecondition, match="seccomp filter already released"):
        compiled.load()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (FilterSpec("SCMP_ACT_FOO"), 'unknown seccomp action "SCMP_ACT_FOO"'),
        (
            FilterSpec("SCMP_ACT_ALLOW", rules=(Rule(("getpid",), "SCMP_ACT_BAR"),)),
            'unknown seccomp action "SCMP_ACT_BAR"',
        ),
        (
            FilterSpec(
                "SCMP_ACT_ALLOW",
                rules=(Rule(("getpid",), "SCMP_ACT_ERRNO", args=(ArgCondition(0, 1, 0, "LT"),)),),
            ),
            'unknown seccomp operator "LT"',
        ),
        (
            FilterSpec(
                "SCMP_ACT_ALLOW",
                rules=(
                    Rule(
                        ("getpid",),
                        "SCMP_ACT_ERRNO",
                        args=(ArgCondition(6, 1, 0, "SCMP_CMP_EQ"),),
                    ),
                ),
            ),
            'seccomp rule for "getpid": argument index 6 out of range 0-5',
        ),
        (
            FilterSpec(
                "SCMP_ACT_ALLOW",
                rules=(
                    Rule(
                        ("getpid",),
                        "SCMP_ACT_ERRNO",
                        args=(ArgCondition(0, -1, 0, "SCMP_CMP_EQ"),),
                    ),
                ),
            ),
            "argument value -1 is not a 64-bit unsigned",
        ),
        (
            FilterSpec("SCMP_ACT_ALLOW", architectures=("SCMP_ARCH_VAX",)),
            'unknown seccomp architecture "SCMP_ARCH_VAX"',
        ),
        (
            FilterSpec("SCMP_ACT_ALLOW", flags=("SECCOMP_FILTER_FLAG_FAST",)),
            'unknown seccomp flag "SECCOMP_FILTER_FLAG_FAST"',
        ),
        (
            FilterSpec("SCMP_ACT_ERRNO", default_errno_ret=70000),
            "default errno_ret 70000 out of range 0-65535",
        ),
    ],
)
def test_bad_input_is_invalid_argument(spec: FilterSpec, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        seccomp.compile_filter(spec)


@pytest.mark.parametrize(
    "spec",
    [
        FilterSpec("SCMP_ACT_NOTIFY"),
        FilterSpec("SCMP_ACT_ALLOW", rules=(Rule(("getpid",), "SCMP_ACT_NOTIFY"),)),
    ],
)
def test_notify_is_not_supported(spec: FilterSpec) -> None:
    with pytest.raises(NotSupported, match='seccomp action "SCMP_ACT_NOTIFY" is not supported'):
        seccomp.compile_filter(spec)


def test_missing_library_is_failed_precondition(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(seccomp, "_library", None)
    monkeypatch.setattr(seccomp, "_LIBRARY_NAME", "libseccomp-absent.so.0")

    with pytest.raises(FailedPrecondition, match="^libseccomp not found: install libseccomp2$"):
        seccomp.compile_filter(FilterSpec("SCMP_ACT_ALLOW"))
    assert not seccomp.is_available()


# --- loading: behaviour in a forked child --------------------------------------------


def test_errno_default_with_allow_list(tmp_path: Path) -> None:
    spec = FilterSpec(
        default_action="SCMP_ACT_ERRNO",
        rules=(Rule(names=(*_INTERPRETER_SYSCALLS, "getpid"), action="SCMP_ACT_ALLOW"),),
    )
    target = str(tmp_path / "denied")

    def body(_: int) -> int:
        pid = os.getpid()
        _no_new_privs()
        compiled.load()
        if os.getpid() != pid:  # allowed, so the real pid and not -1
            return 3
        return _errno_of(lambda: os.mkdir(target))

    with seccomp.compile_filter(spec) as compiled:
        status, report = _run_child(body)

    assert _exit_code(status, report) == errno.EPERM
    assert not os.path.exists(target)


def test_errno_ret_is_returned_by_denied_syscall(tmp_path: Path) -> None:
    spec = FilterSpec(
        default_action="SCMP_ACT_ALLOW",
        rules=(Rule(names=("mkdir", "mkdirat"), action="SCMP_ACT_ERRNO", errno_ret=38),),
    )
    target = str(tmp_path / "denied")

    def body(_: int) -> int:
        _no_new_privs()
        compiled.load()
        return _errno_of(lambda: os.mkdir(target))

    with seccomp.compile_filter(spec) as compiled:
        status, report = _run_child(body)

    assert _exit_code(status, report) == errno.ENOSYS
    assert not os.path.exists(target)


def test_arg_condition_blocks_personality_unless_arg0_is_zero() -> None:
    spec = FilterSpec(
        default_action="SCMP_ACT_ALLOW",
        rules=(
            Rule(
                names=("personality",),
                action="SCMP_ACT_ERRNO",
                args=(ArgCondition(index=0, value=0, value_two=0, op="SCMP_CMP_NE"),),
            ),
        ),
    )
    personality = _libc.personality
    personality.argtypes = (ctypes.c_ulong,)
    personality.restype = ctypes.c_int

    def body(report: int) -> int:
        _no_new_privs()
        compiled.load()
        query = personality(0xFFFFFFFF)  # reads the persona; now denied
        query_errno = ctypes.get_errno()
        linux = personality(0)  # PER_LINUX, what the process has already
        os.write(report, f"{query} {query_errno} {linux}".encode())
        return 0

    with seccomp.compile_filter(spec) as compiled:
        status, report = _run_child(body)

    assert _exit_code(status, report) == 0
    query, query_errno, linux = (int(v) for v in report.split())
    assert (query, query_errno) == (-1, errno.EPERM)
    assert linux >= 0


def test_conditions_on_different_args_are_anded() -> None:
    spec = FilterSpec(
        default_action="SCMP_ACT_ALLOW",
        rules=(
            Rule(
                names=("getpriority",),
                action="SCMP_ACT_ERRNO",
                errno_ret=77,
                args=(
                    ArgCondition(0, os.PRIO_PROCESS, 0, "SCMP_CMP_EQ"),
                    ArgCondition(1, 0, 0, "SCMP_CMP_EQ"),
                ),
            ),
        ),
    )

    def body(report: int) -> int:
        _no_new_privs()
        compiled.load()
        both = _errno_of(lambda: os.getpriority(os.PRIO_PROCESS, 0))
        one = _errno_of(lambda: os.getpriority(os.PRIO_PROCESS, os.getpid()))
        os.write(report, f"{both} {one}".encode())
        return 0

    with seccomp.compile_filter(spec) as compiled:
        status, report = _run_child(body)

    assert _exit_code(status, report) == 0
    assert report.split() == [b"77", b"0"]


def test_conditions_on_the_same_arg_are_ored() -> None:
    parent = os.getpid()
    spec = FilterSpec(
        default_action="SCMP_ACT_ALLOW",
        rules=(
            Rule(
                names=("getpriority",),
                action="SCMP_ACT_ERRNO",
                errno_ret=77,
                args=(
                    ArgCondition(1, parent, 0, "SCMP_CMP_EQ"),
                    ArgCondition(1, 0, 0, "SCMP_CMP_EQ"),
                ),
            ),
        ),
    )

    def body(report: int) -> int:
        _no_new_privs()
        compiled.load()
        results = [
            _errno_of(lambda: os.getpriority(os.PRIO_PROCESS, parent)),
            _errno_of(lambda: os.getpriority(os.PRIO_PROCESS, 0)),
            _errno_of(lambda: os.getpriority(os.PRIO_PROCESS, os.getpid())),
        ]
        os.write(report, " ".join(map(str, results)).encode())
        return 0

    with seccomp.compile_filter(spec) as compiled:
        status, report = _run_child(body)

    assert _exit_code(status, report) == 0
    assert report.split() == [b"77", b"77", b"0"]


def test_masked_eq_denies_new_uts_namespace_but_not_fork() -> None:
    uts = ArgCondition(0, _CLONE_NEWUTS, _CLONE_NEWUTS, "SCMP_CMP_MASKED_EQ")
    spec = FilterSpec(
        default_action="SCMP_ACT_ALLOW",
        rules=(Rule(("clone", "unshare"), "SCMP_ACT_ERRNO", errno_ret=42, args=(uts,)),),
    )
    unshare = _libc.unshare
    unshare.argtypes = (ctypes.c_int,)
    raw_syscall = _libc.syscall
    raw_syscall.restype = ctypes.c_long
    clone_nr = _SYS_CLONE.get(platform.machine())

    def body(report: int) -> int:
        _no_new_privs()
        compiled.load()
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        _, fork_status = os.waitpid(pid, 0)
        unshare_rc = unshare(_CLONE_NEWUTS)
        unshare_errno = ctypes.get_errno()
        clone_errno = -1
        if clone_nr is not None:
            flags = ctypes.c_ulong(_CLONE_NEWUTS | _SIGCHLD)
            zero = ctypes.c_ulong(0)
            rc = raw_syscall(ctypes.c_long(clone_nr), flags, zero, zero, zero, zero)
            if rc == 0:  # the filter let it through: we are the new process
                os._exit(0)
            if rc > 0:
                os.waitpid(rc, 0)
            clone_errno = ctypes.get_errno() if rc < 0 else 0
        os.write(report, f"{fork_status} {unshare_rc} {unshare_errno} {clone_errno}".encode())
        return 0

    with seccomp.compile_filter(spec) as compiled:
        status, report = _run_child(body)

    assert _exit_code(status, report) == 0
    fork_status, unshare_rc, unshare_errno, clone_errno = (int(v) for v in report.split())
    assert fork_status == 0
    assert (unshare_rc, unshare_errno) == (-1, 42)
    assert clone_errno in (42, -1)  # -1: no raw clone number known for this machine


def test_kill_process_kills_child_with_sigsys() -> None:
    spec = FilterSpec("SCMP_ACT_ALLOW", rules=(Rule(("getppid",), "SCMP_ACT_KILL_PROCESS"),))

    def body(_: int) -> int:
        _no_core_dump()
        _no_new_privs()
        compiled.load()
        os.getppid()
        return 0

    with seccomp.compile_filter(spec) as compiled:
        status, report = _run_child(body)

    assert os.WIFSIGNALED(status), f"child exited with {status}: {report!r}"
    assert os.WTERMSIG(status) == signal.SIGSYS


def test_load_without_no_new_privs_or_cap_sys_admin_fails() -> None:
    spec = FilterSpec("SCMP_ACT_ALLOW", rules=(Rule(("mkdir",), "SCMP_ACT_ERRNO"),))

    def body(report: int) -> int:
        caps.capset(0, 0, 0)
        try:
            compiled.load()
        except FailedPrecondition as exc:
            os.write(report, str(exc).encode())
            return 0
        return 1

    with seccomp.compile_filter(spec) as compiled:
        status, report = _run_child(body)

    assert _exit_code(status, report) == 0
    assert report.decode().startswith("seccomp_load: ")
