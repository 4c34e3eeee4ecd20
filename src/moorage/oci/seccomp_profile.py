"""Moorage's default seccomp profile: an allow-list equivalent in effect to Docker's.

This module owns the profile as data (an OCI ``linux.seccomp`` object); loading it into
the kernel is ``moorage.sys``'s job. Written from the x86_64 system call table, plus the
i386 names that 32-bit programs use, for SCMP_ARCH_X86_64, SCMP_ARCH_X86 and
SCMP_ARCH_X32. A name that does not exist on one of those architectures is skipped by
the loader for that architecture, as libseccomp-based runtimes do.

Anything not allowed fails with EPERM (``defaultErrnoRet`` 1), which programs already
handle, rather than killing the process. What the profile leaves out, and why:

- kernel keyrings are not namespaced: ``keyctl``, ``add_key``, ``request_key``;
- loading code into the kernel or tracing it: ``bpf``, ``perf_event_open``,
  ``init_module``, ``finit_module``, ``delete_module``, ``create_module``,
  ``kexec_load``, ``kexec_file_load``, ``lookup_dcookie``;
- mounts and namespaces (the container's are set up by the runtime, and new ones are a
  route to privilege): ``mount``, ``umount``, ``umount2``, ``mount_setattr``,
  ``move_mount``, ``open_tree``, ``fsopen``, ``fsconfig``, ``fsmount``, ``fspick``,
  ``pivot_root``, ``unshare``, ``setns``; ``clone`` is allowed only without namespace
  flags, and ``clone3``, whose flags live in memory a filter cannot read, answers
  ENOSYS so that libc falls back to ``clone``;
- reaching into other processes: ``ptrace``, ``process_vm_readv``,
  ``process_vm_writev``, ``process_madvise``, ``kcmp``, ``pidfd_getfd``;
- host-wide state: the clock (``clock_settime``, ``clock_adjtime``, ``settimeofday``,
  ``stime``; the read-only use of ``adjtimex`` stays allowed), ``reboot``, ``swapon``,
  ``swapoff``, ``acct``, ``quotactl``, ``quotactl_fd``, ``syslog``, ``vhangup``,
  ``nfsservctl``;
- hardware and legacy interfaces: ``iopl``, ``ioperm``, ``vm86``, ``vm86old``,
  ``_sysctl``, ``sysfs``, ``uselib``, ``ustat``, ``get_kernel_syms``, ``query_module``;
- file handles that bypass path permission checks: ``open_by_handle_at``
  (``name_to_handle_at`` only reads a handle and stays allowed);
- NUMA policy, which needs CAP_SYS_NICE that containers lack by default:
  ``get_mempolicy``, ``set_mempolicy``, ``set_mempolicy_home_node``, ``mbind``,
  ``migrate_pages``, ``move_pages``;
- interfaces that have been rich sources of kernel exploits: ``userfaultfd``,
  ``io_uring_setup``, ``io_uring_enter``, ``io_uring_register``, ``fanotify_init``;
- ``personality`` is allowed only for the values that do not weaken the process
  (Linux, 32-bit Linux, the 2.6 uname, and the query 0xffffffff); others could turn off
  address-space randomisation.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ALLOWED_SYSCALLS", "BLOCKED_SYSCALLS", "default_seccomp_profile"]

EPERM = 1
ENOSYS = 38

# Packed several to a line for reading; one name per line would run to 350 lines.
# fmt: off
ALLOWED_SYSCALLS: tuple[str, ...] = (
    "accept", "accept4", "access", "adjtimex", "alarm", "arch_prctl", "bind", "brk",
    "cachestat", "capget", "capset", "chdir", "chmod", "chown", "chroot", "clock_getres",
    "clock_gettime", "clock_nanosleep", "close", "close_range", "connect", "copy_file_range",
    "creat", "dup", "dup2", "dup3", "epoll_create", "epoll_create1", "epoll_ctl", "epoll_pwait",
    "epoll_pwait2", "epoll_wait", "eventfd", "eventfd2", "execve", "execveat", "exit",
    "exit_group", "faccessat", "faccessat2", "fadvise64", "fallocate", "fanotify_mark",
    "fchdir", "fchmod", "fchmodat", "fchmodat2", "fchown", "fchownat", "fcntl", "fdatasync",
    "fgetxattr", "flistxattr", "flock", "fork", "fremovexattr", "fsetxattr", "fstat", "fstatfs",
    "fsync", "ftruncate", "futex", "futex_requeue", "futex_wait", "futex_waitv", "futex_wake",
    "futimesat", "get_robust_list", "get_thread_area", "getcpu", "getcwd", "getdents",
    "getdents64", "getegid", "geteuid", "getgid", "getgroups", "getitimer", "getpeername",
    "getpgid", "getpgrp", "getpid", "getppid", "getpriority", "getrandom", "getresgid",
    "getresuid", "getrlimit", "getrusage", "getsid", "getsockname", "getsockopt", "gettid",
    "gettimeofday", "getuid", "getxattr", "inotify_add_watch", "inotify_init", "inotify_init1",
    "inotify_rm_watch", "io_cancel", "io_destroy", "io_getevents", "io_pgetevents", "io_setup",
    "io_submit", "ioctl", "ioprio_get", "ioprio_set", "kill", "landlock_add_rule",
    "landlock_create_ruleset", "landlock_restrict_self", "lchown", "lgetxattr", "link",
    "linkat", "listen", "listxattr", "llistxattr", "lremovexattr", "lseek", "lsetxattr",
    "lstat", "madvise", "map_shadow_stack", "membarrier", "memfd_create", "memfd_secret",
    "mincore", "mkdir", "mkdirat", "mknod", "mknodat", "mlock", "mlock2", "mlockall", "mmap",
    "modify_ldt", "mprotect", "mq_getsetattr", "mq_notify", "mq_open", "mq_timedreceive",
    "mq_timedsend", "mq_unlink", "mremap", "msgctl", "msgget", "msgrcv", "msgsnd", "msync",
    "munlock", "munlockall", "munmap", "name_to_handle_at", "nanosleep", "newfstatat", "open",
    "openat", "openat2", "pause", "pidfd_open", "pidfd_send_signal", "pipe", "pipe2",
    "pkey_alloc", "pkey_free", "pkey_mprotect", "poll", "ppoll", "prctl", "pread64", "preadv",
    "preadv2", "prlimit64", "process_mrelease", "pselect6", "pwrite64", "pwritev", "pwritev2",
    "read", "readahead", "readlink", "readlinkat", "readv", "recvfrom", "recvmmsg", "recvmsg",
    "remap_file_pages", "removexattr", "rename", "renameat", "renameat2", "restart_syscall",
    "rmdir", "rseq", "rt_sigaction", "rt_sigpending", "rt_sigprocmask", "rt_sigqueueinfo",
    "rt_sigreturn", "rt_sigsuspend", "rt_sigtimedwait", "rt_tgsigqueueinfo",
    "sched_get_priority_max", "sched_get_priority_min", "sched_getaffinity", "sched_getattr",
    "sched_getparam", "sched_getscheduler", "sched_rr_get_interval", "sched_setaffinity",
    "sched_setattr", "sched_setparam", "sched_setscheduler", "sched_yield", "seccomp", "select",
    "semctl", "semget", "semop", "semtimedop", "sendfile", "sendmmsg", "sendmsg", "sendto",
    "set_robust_list", "set_thread_area", "set_tid_address", "setdomainname", "setfsgid",
    "setfsuid", "setgid", "setgroups", "sethostname", "setitimer", "setpgid", "setpriority",
    "setregid", "setresgid", "setresuid", "setreuid", "setrlimit", "setsid", "setsockopt",
    "setuid", "setxattr", "shmat", "shmctl", "shmdt", "shmget", "shutdown", "sigaltstack",
    "signalfd", "signalfd4", "socket", "socketpair", "splice", "stat", "statfs", "statx",
    "symlink", "symlinkat", "sync", "sync_file_range", "syncfs", "sysinfo", "tee", "tgkill",
    "time", "timer_create", "timer_delete", "timer_getoverrun", "timer_gettime",
    "timer_settime", "timerfd_create", "timerfd_gettime", "timerfd_settime", "times", "tkill",
    "truncate", "umask", "uname", "unlink", "unlinkat", "utime", "utimensat", "utimes", "vfork",
    "vmsplice", "wait4", "waitid", "write", "writev",
    # Names only the 32-bit x86 ABI has (old ids, 64-bit time and file-offset variants).
    "_llseek", "_newselect", "chown32", "clock_getres_time64", "clock_gettime64",
    "clock_nanosleep_time64", "fadvise64_64", "fchown32", "fcntl64", "fstat64", "fstatat64",
    "fstatfs64", "ftruncate64", "futex_time64", "getegid32", "geteuid32", "getgid32",
    "getgroups32", "getresgid32", "getresuid32", "getuid32", "io_pgetevents_time64", "ipc",
    "lchown32", "lstat64", "mmap2", "mq_timedreceive_time64", "mq_timedsend_time64", "nice",
    "ppoll_time64", "pselect6_time64", "recvmmsg_time64", "rt_sigtimedwait_time64",
    "sched_rr_get_interval_time64", "semtimedop_time64", "sendfile64", "setfsgid32",
    "setfsuid32", "setgid32", "setgroups32", "setregid32", "setresgid32", "setresuid32",
    "setreuid32", "setuid32", "sigaction", "signal", "sigpending", "sigprocmask", "sigreturn",
    "sigsuspend", "socketcall", "stat64", "statfs64", "timer_gettime64", "timer_settime64",
    "timerfd_gettime64", "timerfd_settime64", "truncate64", "ugetrlimit", "utimensat_time64",
    "waitpid",
)
# fmt: on

# Documentation and tests: the names the profile deliberately leaves out (see above).
# fmt: off
BLOCKED_SYSCALLS: tuple[str, ...] = (
    "_sysctl", "acct", "add_key", "bpf", "clock_adjtime", "clock_adjtime64", "clock_settime",
    "clock_settime64", "create_module", "delete_module", "fanotify_init", "finit_module",
    "fsconfig", "fsmount", "fsopen", "fspick", "get_kernel_syms", "get_mempolicy",
    "init_module", "io_uring_enter", "io_uring_register", "io_uring_setup", "ioperm", "iopl",
    "kcmp", "kexec_file_load", "kexec_load", "keyctl", "lookup_dcookie", "mbind",
    "migrate_pages", "mount", "mount_setattr", "move_mount", "move_pages", "nfsservctl",
    "open_by_handle_at", "open_tree", "perf_event_open", "pidfd_getfd", "pivot_root",
    "process_madvise", "process_vm_readv", "process_vm_writev", "ptrace", "query_module",
    "quotactl", "quotactl_fd", "reboot", "request_key", "set_mempolicy",
    "set_mempolicy_home_node", "setns", "settimeofday", "stime", "swapoff", "swapon", "sysfs",
    "syslog", "umount", "umount2", "unshare", "uselib", "userfaultfd", "ustat", "vhangup",
    "vm86", "vm86old",
)
# fmt: on

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_NAMESPACE_FLAGS = (
    CLONE_NEWNS
    | CLONE_NEWCGROUP
    | CLONE_NEWUTS
    | CLONE_NEWIPC
    | CLONE_NEWUSER
    | CLONE_NEWPID
    | CLONE_NEWNET
)

# PER_LINUX, PER_LINUX32, UNAME26, PER_LINUX32|UNAME26, and 0xffffffff which only asks.
PERSONALITY_ALLOWED = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)


def default_seccomp_profile() -> dict[str, Any]:
    """A fresh OCI ``linux.seccomp`` object for the default profile."""
    rules: list[dict[str, Any]] = [
        {"names": list(ALLOWED_SYSCALLS), "action": "SCMP_ACT_ALLOW"},
    ]
    # Conditions inside one rule are ANDed, so each permitted value needs its own rule.
    rules.extend(
        {
            "names": ["personality"],
            "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": value, "valueTwo": 0, "op": "SCMP_CMP_EQ"}],
        }
        for value in PERSONALITY_ALLOWED
    )
    rules.append(
        {
            # Allowed when (flags & CLONE_NAMESPACE_FLAGS) == 0: threads and fork, no new
            # namespaces. For MASKED_EQ, value is the mask and valueTwo the result.
            "names": ["clone"],
            "action": "SCMP_ACT_ALLOW",
            "args": [
                {
                    "index": 0,
                    "value": CLONE_NAMESPACE_FLAGS,
                    "valueTwo": 0,
                    "op": "SCMP_CMP_MASKED_EQ",
                }
            ],
        }
    )
    rules.append({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS})
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": EPERM,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": rules,
    }
