"""The default seccomp profile (moorage.oci.seccomp_profile).

The profile is checked by evaluating it here the way the kernel filter would: the rule
whose names and argument conditions match decides, otherwise the default action.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from moorage.oci import default_seccomp_profile, parse_spec
from moorage.oci.default_spec import default_spec
from moorage.oci.seccomp_profile import (
    ALLOWED_SYSCALLS,
    BLOCKED_SYSCALLS,
    CLONE_NEWNET,
    CLONE_NEWNS,
    CLONE_NEWUSER,
)

ALLOW = ("SCMP_ACT_ALLOW", None)
EPERM = ("SCMP_ACT_ERRNO", 1)
ENOSYS = ("SCMP_ACT_ERRNO", 38)

SIGCHLD = 17
# What glibc's pthread_create passes: CLONE_VM|FS|FILES|SIGHAND|THREAD|SYSVSEM|SETTLS|
# PARENT_SETTID|CHILD_CLEARTID.
THREAD_FLAGS = 0x3D0F00


def _condition_holds(condition: dict[str, Any], args: Sequence[int]) -> bool:
    arg, value, op = args[condition["index"]], condition["value"], condition["op"]
    if op == "SCMP_CMP_MASKED_EQ":
        return arg & value == condition.get("valueTwo", 0)
    compare = {
        "SCMP_CMP_EQ": arg == value,
        "SCMP_CMP_NE": arg != value,
        "SCMP_CMP_LT": arg < value,
        "SCMP_CMP_LE": arg <= value,
        "SCMP_CMP_GT": arg > value,
        "SCMP_CMP_GE": arg >= value,
    }
    return compare[op]


def _verdict(name: str, *args: int) -> tuple[str, int | None]:
    profile = default_seccomp_profile()
    padded = [*args, *([0] * (6 - len(args)))]
    for rule in profile["syscalls"]:
        if name in rule["names"] and all(_condition_holds(c, padded) for c in rule.get("args", [])):
            return rule["action"], rule.get("errnoRet")
    return profile["defaultAction"], profile["defaultErrnoRet"]


def test_profile_is_accepted_by_parse_spec() -> None:
    spec = parse_spec(default_spec())

    assert spec.linux.seccomp is not None
    assert spec.linux.seccomp.architectures == (
        "SCMP_ARCH_X86_64",
        "SCMP_ARCH_X86",
        "SCMP_ARCH_X32",
    )


def test_allow_list_has_no_duplicates_and_no_blocked_names() -> None:
    assert len(set(ALLOWED_SYSCALLS)) == len(ALLOWED_SYSCALLS)
    assert not set(ALLOWED_SYSCALLS) & set(BLOCKED_SYSCALLS)


def test_no_name_has_rules_with_different_actions() -> None:
    # The evaluator above takes the first match; that is only faithful to the kernel
    # filter when a name's rules all agree on the action.
    actions: dict[str, set[str]] = {}
    for rule in default_seccomp_profile()["syscalls"]:
        for name in rule["names"]:
            actions.setdefault(name, set()).add(rule["action"])

    assert all(len(found) == 1 for found in actions.values())


@pytest.mark.parametrize("name", BLOCKED_SYSCALLS)
def test_blocked_syscall_gets_eperm(name: str) -> None:
    assert _verdict(name) == EPERM


@pytest.mark.parametrize(
    "name",
    [
        "read",
        "write",
        "openat",
        "close",
        "execve",
        "futex",
        "mmap",
        "brk",
        "exit_group",
        "socket",
        "connect",
        "epoll_wait",
        "getrandom",
        "statx",
        "wait4",
        "rt_sigaction",
        "adjtimex",
        "name_to_handle_at",
        "sethostname",
        "chown",
        "socketcall",
        "_llseek",
    ],
)
def test_common_syscall_is_allowed(name: str) -> None:
    assert _verdict(name) == ALLOW


@pytest.mark.parametrize("flags", [SIGCHLD, THREAD_FLAGS])
def test_clone_without_namespace_flags_is_allowed(flags: int) -> None:
    assert _verdict("clone", flags) == ALLOW


@pytest.mark.parametrize("flag", [CLONE_NEWUSER, CLONE_NEWNET, CLONE_NEWNS])
def test_clone_with_namespace_flag_gets_eperm(flag: int) -> None:
    assert _verdict("clone", SIGCHLD | flag) == EPERM


def test_clone3_answers_enosys() -> None:
    assert _verdict("clone3") == ENOSYS


@pytest.mark.parametrize("persona", [0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF])
def test_harmless_personality_is_allowed(persona: int) -> None:
    assert _verdict("personality", persona) == ALLOW


def test_personality_disabling_aslr_gets_eperm() -> None:
    addr_no_randomize = 0x0040000

    assert _verdict("personality", addr_no_randomize) == EPERM
