"""The code that runs in the processes that become a container.

The runtime starts a fresh interpreter from a sealed memfd (``moorage.sys.sealed``),
or forks one that already runs from such a copy (a zygote, or a caller in the
fork mode of ``moorage.runtime.spawn``: :func:`forked_stage`), and talks to it
over a ``moorage.runtime.sync`` channel. That process (the *stage*)
joins or creates the namespaces; when a pid namespace is involved it forks, and
the child becomes the container's init (``create``) or the exec'd process
(``exec``). The stage reports the child's host pid and exits.

The init then builds the rootfs, pivots into it, applies the process settings
(rlimits, user, capabilities, no_new_privs, seccomp), reports ``ready``, blocks on
the exec fifo until ``start`` opens it, and execs the user's program. Until that
exec the process is non-dumpable, so nothing in the container can open its
/proc entries; after exec nothing of the runtime is left in it.
"""

from __future__ import annotations

import _socket
import marshal
import os
import stat
import sys

from moorage.errors import FailedPrecondition, InvalidArgument, MoorageError, NotFound
from moorage.runtime import rootfs
from moorage.runtime.sync import Channel
from moorage.sys import caps, fds, libc

# Annotations only: the typing machinery is not imported at run time here (mypy
# treats TYPE_CHECKING as true), and _socket is the socket module's C core,
# without the enum classes the wrapper builds on import.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    from collections.abc import Mapping
    from typing import Any, NoReturn

    # The config and process arrive as the JSON dicts the runtime validated (see
    # moorage.oci.runtime_spec); the init reads them as they are rather than loading
    # the model classes, because every import here delays every container start.
    Config = Mapping[str, Any]

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


_TRACE = bool(os.environ.get("MOOR_RUNTIME_TRACE"))


def _trace(what: str) -> None:
    """With MOOR_RUNTIME_TRACE set, timestamps of the setup steps go to stderr."""
    if _TRACE:
        import time

        os.write(2, f"[moor-runtime {os.getpid()} {time.monotonic():.4f}] {what}\n".encode())


# A stage forked by the zygote always forks the container's process, so that the
# process is never the zygote's child: it then reparents to the runtime's caller
# (a subreaper), which collects its exit status.
_always_fork = False


def main() -> NoReturn:
    """Entry point of the sealed interpreter (see ``moorage.runtime.spawn``)."""
    libc.prctl(libc.PR_SET_DUMPABLE, 0)
    os.close(int(os.environ.pop("_MOOR_EXE_FD")))
    os.environ.pop("PYTHONHOME", None)
    zygote_fd = os.environ.pop("_MOOR_ZYGOTE_FD", None)
    if zygote_fd is not None:
        import socket

        _zygote(socket.socket(fileno=int(zygote_fd)))
    chan = Channel(_socket.socket(fileno=int(os.environ.pop("_MOOR_SYNC_FD"))))
    os.set_inheritable(chan.fileno(), False)
    _guarded(chan, _stage, chan)


def _zygote(control: socket.socket) -> NoReturn:
    """Serve stage forks to one runtime caller until it closes the control socket.

    Each request carries, as SCM_RIGHTS, the stage's sync socket, its stdio and
    the descriptors it must find at given numbers; the reply is the stage's pid.
    Forking this warm, already-imported interpreter replaces a fresh interpreter
    start per container: the in-process API's whole advantage over the CLI.
    """
    import signal
    import socket

    _preload()
    import base64  # noqa: F401

    from moorage.runtime import hooks  # noqa: F401
    from moorage.sys import netdev, seccomp_bpf, tty  # noqa: F401

    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # stages are reaped by the kernel
    os.set_inheritable(control.fileno(), False)
    while True:
        try:
            raw, fds, _, _ = socket.recv_fds(control, 65536, 512)
        except OSError:
            os._exit(0)
        if not raw:
            os._exit(0)
        request = marshal.loads(raw)
        _trace("zygote request")
        pid = os.fork()
        if pid == 0:
            _trace("zygote child")
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            control.close()
            forked_stage(fds, request["targets"], always_fork=True)
        for fd in fds:
            os.close(fd)
        control.send(marshal.dumps({"pid": pid}))


def forked_stage(fds: list[int], targets: list[int], *, always_fork: bool) -> NoReturn:
    """Become a stage in a child just forked from a warm interpreter; never returns.

    The child side of both warm paths: a fork of the zygote above, and a fork of a
    process that forks its stages itself (``moorage.runtime.spawn.fork_stages``).
    ``fds`` and ``targets`` are as :func:`_place_fds` takes them. ``always_fork``:
    the container's process must not be this stage (the zygote's case; see
    ``_always_fork``). The forking process's heap comes along: the child is made
    non-dumpable first, and the cyclic GC is off so that no finalizer of an object
    of the parent's closes a descriptor number the stage has reused.
    """
    import gc

    global _always_fork
    gc.disable()
    libc.prctl(libc.PR_SET_DUMPABLE, 0)
    chan = Channel(_socket.socket(fileno=_place_fds(fds, targets)))
    _always_fork = always_fork
    _guarded(chan, _stage, chan)


def _place_fds(fds: list[int], targets: list[int]) -> int:
    """Move received descriptors to the numbers the stage expects; return the sync fd.

    ``fds[0]`` is the sync socket (any number); ``fds[i]`` goes to ``targets[i-1]``.
    Everything else this forked child holds is closed.
    """
    import fcntl

    floor = max([*targets, 2]) + 1  # copies above every target number first
    moved = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, floor) for fd in fds]
    keep = set(moved)
    for entry in os.listdir("/proc/self/fd"):
        n = int(entry)
        if n not in keep:
            try:
                os.close(n)
            except OSError:
                pass
    for src, target in zip(moved[1:], targets, strict=True):
        os.dup2(src, target)  # dup2 leaves the target inheritable
        os.close(src)
    os.set_inheritable(moved[0], False)
    return moved[0]


def _guarded(chan: Channel, fn: Any, *args: Any) -> NoReturn:
    """Run ``fn``; on any failure report it to the runtime and exit. Never returns."""
    try:
        fn(*args)
    except BaseException as exc:  # noqa: BLE001 - everything must reach the parent
        kind = type(exc).__name__
        message = str(exc) if isinstance(exc, MoorageError) else _describe(exc)
        try:
            chan.send("error", message=message, error_class=kind)
        except OSError:
            pass
        os._exit(1)
    os._exit(0)


def _describe(exc: BaseException) -> str:
    if os.environ.get("MOOR_RUNTIME_DEBUG"):
        import traceback

        return "".join(traceback.format_exception(exc))
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror.lower()}{where}"
    if isinstance(exc, OSError):  # raised with our own message, as Docker words it
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _preload() -> None:
    """Load now what would otherwise be loaded lazily from the host's filesystem.

    After pivot_root (init) or setns into the container's mount namespace (exec)
    the host's stdlib and libraries are out of reach, and must stay so.
    """
    import encodings.ascii
    import encodings.latin_1
    import encodings.utf_8  # noqa: F401
    import resource  # noqa: F401

    if os.environ.get("MOOR_RUNTIME_DEBUG"):
        import traceback  # noqa: F401
    caps.last_cap()


def _stage(chan: Channel) -> None:
    _trace("stage start")
    _preload()
    boot = chan.recv()
    _trace("bootstrap received")
    if boot is None:
        raise FailedPrecondition("runtime went away before bootstrap")
    config: Config = boot["config"]
    if boot.get("seccomp"):
        import base64  # noqa: F401

        from moorage.sys import seccomp_bpf  # noqa: F401
    if config.get("hooks"):
        from moorage.runtime import hooks  # noqa: F401
    process = config["process"] if boot["role"] == "init" else boot["process"]
    if process.get("terminal"):
        from moorage.sys import tty  # noqa: F401
    from moorage.sys import netdev  # noqa: F401

    # The runtime moves us into the container's cgroup while we got ready; we must
    # be in it before creating the cgroup namespace and forking the container.
    joined = chan.recv()
    if joined is None or joined.get("type") != "joined":
        raise FailedPrecondition("runtime did not place the container in its cgroup")
    _trace("imports done, cgroup joined")
    if boot["role"] == "init":
        _enter_namespaces_for_init(chan, config)
        _trace("namespaces entered")
        _fork_if_needed(chan, config, boot, _container_init, process=process)
    else:
        needs_fork = _join_container_namespaces(config, boot["pid"])
        _fork_if_needed(chan, config, boot, _exec_child, force=needs_fork, process=boot["process"])


def _namespaces(config: Config) -> list[tuple[str, str | None]]:
    return [(ns["type"], ns.get("path")) for ns in config.get("linux", {}).get("namespaces", ())]


def _enter_namespaces_for_init(chan: Channel, config: Config) -> None:
    new_flags = 0
    joins: list[tuple[int, int]] = []
    for ns_type, path in _namespaces(config):
        flag, _ = libc.NAMESPACE_FLAGS[ns_type]
        if path:
            try:
                joins.append((flag, os.open(path, os.O_RDONLY | os.O_CLOEXEC)))
            except OSError as exc:
                raise NotFound(f"namespace path for {ns_type}: {path}: {exc.strerror}") from exc
        else:
            new_flags |= flag
    # A joined user namespace first: the others may be owned by it.
    for flag, fd in sorted(joins, key=lambda j: j[0] != libc.CLONE_NEWUSER):
        try:
            libc.setns(fd, flag)
        except OSError as exc:
            raise FailedPrecondition(f"joining namespace: {exc.strerror}") from exc
        finally:
            os.close(fd)
    if new_flags & libc.CLONE_NEWUSER:
        libc.unshare(libc.CLONE_NEWUSER)
        chan.send("userns")
        reply = chan.recv()
        if reply is None or reply.get("type") != "userns-done":
            raise FailedPrecondition("runtime did not write the id mappings")
        new_flags &= ~libc.CLONE_NEWUSER
    if any(j[0] == libc.CLONE_NEWUSER for j in joins) or config["linux"].get("uidMappings"):
        # Become the namespace's root so that mounts and setuid later are allowed.
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
    if new_flags:
        libc.unshare(new_flags)


def _join_container_namespaces(config: Config, init_pid: int) -> bool:
    """setns into every namespace of the container's init; True when a fork is needed."""
    joins: list[tuple[int, int]] = []
    for ns_type, _ in _namespaces(config):
        flag, name = libc.NAMESPACE_FLAGS[ns_type]
        theirs = f"/proc/{init_pid}/ns/{name}"
        if name == "pid":
            theirs = f"/proc/{init_pid}/ns/pid"
        try:
            if os.stat(theirs).st_ino == os.stat(f"/proc/self/ns/{name}").st_ino:
                continue
            joins.append((flag, os.open(theirs, os.O_RDONLY | os.O_CLOEXEC)))
        except FileNotFoundError as exc:
            raise FailedPrecondition("container's init is gone") from exc
    fork = False
    for flag, fd in sorted(joins, key=lambda j: j[0] != libc.CLONE_NEWUSER):
        try:
            libc.setns(fd, flag)
        finally:
            os.close(fd)
        fork = fork or flag in (libc.CLONE_NEWPID, libc.CLONE_NEWTIME)
        if flag == libc.CLONE_NEWUSER:
            os.setresgid(0, 0, 0)
            os.setresuid(0, 0, 0)
    return fork


def _fork_if_needed(
    chan: Channel,
    config: Config,
    boot: dict[str, Any],
    body: Any,
    *,
    process: Config,
    force: bool = False,
) -> None:
    types = {ns_type for ns_type, _ in _namespaces(config)}
    if force or _always_fork or "pid" in types or "time" in types:
        pid = os.fork()
        if pid:
            chan.send("pid", pid=pid)
            return
        _guarded(chan, body, chan, config, boot, process)
    chan.send("pid", pid=os.getpid())
    body(chan, config, boot, process)


# --- the container's init ---------------------------------------------------


def _container_init(chan: Channel, config: Config, boot: dict[str, Any], process: Config) -> None:
    os.setsid()
    linux = config.get("linux", {})
    types = {ns_type for ns_type, _ in _namespaces(config)}
    seccomp_filter = _seccomp_of(boot)
    if any(t == "network" and not path for t, path in _namespaces(config)):
        from moorage.sys import netdev

        netdev.link_up("lo")  # as runc does: 127.0.0.1 works in every new netns
    _trace("init start")
    rootfs.prepare(
        config,
        boot["rootfs"],
        boot["bundle"],
        boot["cgroup_paths"],
        in_userns="user" in types,
        cgroupns="cgroup" in types,
    )
    _trace("rootfs prepared")
    state: dict[str, Any] = {}
    hooks = config.get("hooks", {})
    if any(
        hooks.get(k) for k in ("prestart", "createRuntime", "createContainer", "startContainer")
    ):
        chan.send("hooks")
        reply = chan.recv()
        if reply is None or reply.get("type") != "hooks-done":
            raise FailedPrecondition("runtime did not answer the hooks request")
        state = reply["state"]
        _run_hooks(hooks.get("createContainer"), "createContainer", state)
    fifo_fd = boot["fifo_fd"]
    rootfs.pivot(boot["rootfs"])
    if process.get("terminal"):
        _setup_console(boot["console_fd"], process)
    # sysctls go through /proc/sys: before readonlyPaths make it read-only.
    rootfs.write_sysctls(linux.get("sysctl", {}))
    if config.get("hostname"):
        _socket.sethostname(config["hostname"])
    if config.get("domainname"):
        libc.setdomainname(config["domainname"])
    rootfs.mask_paths(linux.get("maskedPaths", ()))
    rootfs.readonly_paths(linux.get("readonlyPaths", ()))
    if config.get("root", {}).get("readonly"):
        rootfs.readonly_root()
    _prepare_process(process, seccomp_filter, boot["preserve_fds"], keep=frozenset({fifo_fd}))
    path = _find_executable(process)
    env = _env_of(process)
    _trace("ready")
    chan.send("ready")
    # Blocks until `start` opens the fifo for reading.
    fd = os.open(f"/proc/self/fd/{fifo_fd}", os.O_WRONLY | os.O_CLOEXEC)
    os.write(fd, b"0")
    os.close(fd)
    os.close(fifo_fd)
    if state:
        state = {**state, "status": "created"}  # startContainer runs during `start`
    _run_hooks(hooks.get("startContainer"), "startContainer", state)
    _exec(process, path, env, seccomp_filter)


def _run_hooks(hooks: list[dict[str, Any]] | None, kind: str, state: dict[str, Any]) -> None:
    if hooks:
        from moorage.runtime.hooks import run_hook_dicts

        run_hook_dicts(hooks, kind, state)


# --- a process exec'd into a running container --------------------------------


def _exec_child(chan: Channel, config: Config, boot: dict[str, Any], process: Config) -> None:
    if process.get("terminal"):
        os.setsid()
        _setup_console(boot["console_fd"], process)
    seccomp_filter = _seccomp_of(boot)
    _prepare_process(process, seccomp_filter, boot["preserve_fds"], keep=frozenset())
    path = _find_executable(process)
    _exec(process, path, _env_of(process), seccomp_filter)


# --- shared steps ---------------------------------------------------------------


class _Seccomp:
    """A compiled filter from the runtime's cache, ready to be installed."""

    def __init__(self, program: bytes, flags: int) -> None:
        self.program, self.flags = program, flags

    def load(self) -> None:
        from moorage.sys import seccomp_bpf

        seccomp_bpf.load(self.program, self.flags)


def _seccomp_of(boot: dict[str, Any]) -> _Seccomp | None:
    compiled = boot.get("seccomp")
    if not compiled:
        return None
    import base64

    return _Seccomp(base64.b64decode(compiled["bpf"]), compiled["flags"])


def _setup_console(console_fd: int | None, process: Config) -> None:
    from moorage.sys import tty

    if console_fd is None:
        raise InvalidArgument("process.terminal is set but no console socket was given")
    ptmx = "/dev/pts/ptmx" if os.path.exists("/dev/pts/ptmx") else "/dev/ptmx"
    master, slave_path = tty.open_pty(ptmx)
    slave = os.open(slave_path, os.O_RDWR | os.O_NOCTTY)
    size = process.get("consoleSize")
    if size:
        tty.set_winsize(master, size["height"], size["width"])
    sock = _socket.socket(fileno=console_fd)
    try:
        rights = master.to_bytes(4, sys.byteorder, signed=True)  # one int: struct cmsghdr data
        sock.sendmsg([slave_path.encode()], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, rights)])
    finally:
        sock.close()
    os.close(master)
    try:
        if not os.path.exists("/dev/console"):
            os.close(os.open("/dev/console", os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600))
        libc.mount(slave_path, "/dev/console", None, libc.MS_BIND)
    except OSError:
        pass  # a read-only /dev: the process still has its terminal on 0, 1 and 2
    for target in (0, 1, 2):
        os.dup2(slave, target)
    if slave > 2:
        os.close(slave)
    tty.make_controlling(0)


def _set_rlimits(process: Config) -> None:
    import resource

    for rl in process.get("rlimits", ()):
        which = getattr(resource, rl["type"], None)
        if which is None:
            raise InvalidArgument(f"unknown rlimit: {rl['type']}")
        try:
            resource.setrlimit(which, (rl["soft"], rl["hard"]))
        except (ValueError, OSError) as exc:
            raise FailedPrecondition(f"setrlimit {rl['type']}: {exc}") from exc


def _fix_stdio_ownership(uid: int, gid: int) -> None:
    """Let a non-root process use its stdio, as runc does; /dev/null is left alone."""
    null = os.stat("/dev/null").st_rdev if os.path.exists("/dev/null") else -1
    for fd in (0, 1, 2):
        try:
            st = os.fstat(fd)
        except OSError:
            continue
        if st.st_uid == uid or (stat.S_ISCHR(st.st_mode) and st.st_rdev == null):
            continue
        try:
            os.fchown(fd, uid, gid)
        except OSError:
            continue


def _prepare_process(
    process: Config,
    seccomp_filter: _Seccomp | None,
    preserve_fds: int,
    *,
    keep: frozenset[int],
) -> None:
    if process.get("oomScoreAdj") is not None:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(process["oomScoreAdj"]))
    _set_rlimits(process)
    user = process.get("user", {})
    uid, gid = user.get("uid", 0), user.get("gid", 0)
    additional_gids = list(user.get("additionalGids", ()))
    umask = user.get("umask")
    os.umask(umask if umask is not None else 0o022)
    no_new_privileges = bool(process.get("noNewPrivileges"))
    fds.close_fds_from(3 + preserve_fds, keep=keep)
    for fd in range(3, 3 + preserve_fds):
        try:
            os.set_inheritable(fd, True)
        except OSError:
            continue  # a preserved number the caller did not actually open
    # Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: load it before
    # the capabilities are dropped. With it, load it as late as possible.
    if seccomp_filter is not None and not no_new_privileges:
        seccomp_filter.load()
    if uid != 0:
        _fix_stdio_ownership(uid, gid)
    c = process.get("capabilities")
    if c is not None:
        caps.drop_bounding(_cap_mask(c.get("bounding", ())))
        caps.set_keepcaps(True)
    try:
        os.setgroups(additional_gids)
    except PermissionError:
        if additional_gids:
            raise
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if c is not None:
        caps.set_keepcaps(False)
        permitted = _cap_mask(c.get("permitted", ()))
        inheritable = _cap_mask(c.get("inheritable", ()))
        caps.capset(_cap_mask(c.get("effective", ())), permitted, inheritable)
        # The kernel only allows ambient caps that are permitted and inheritable;
        # runc drops the others silently, and configs in the wild rely on that.
        caps.raise_ambient(_cap_mask(c.get("ambient", ())) & permitted & inheritable)
    if no_new_privileges:
        libc.prctl(libc.PR_SET_NO_NEW_PRIVS, 1)
    cwd = process.get("cwd", "/")
    try:
        os.chdir(cwd)
    except OSError as exc:
        raise FailedPrecondition(f"process.cwd {cwd!r}: chdir: {exc.strerror}") from exc
    # The working directory must be inside the container's root: a leaked host
    # directory used as cwd has no path from it (CVE-2024-21626): getcwd fails or
    # answers "(unreachable)".
    try:
        inside = os.getcwd().startswith("/")
    except FileNotFoundError:
        inside = False
    if not inside:
        raise PermissionError(
            f"process.cwd {cwd!r}: the working directory is outside the container's root"
        )


def _cap_mask(names: Any) -> int:
    """Mask of the named capabilities this kernel knows; others are ignored, as runc does."""
    last = caps.last_cap()
    mask = 0
    for name in names:
        number = caps.CAPABILITIES.get(name)
        if number is not None and number <= last:
            mask |= 1 << number
    return mask


def _env_of(process: Config) -> dict[str, str]:
    """The process's environment; HOME from the container's passwd when unset, as runc does."""
    env: dict[str, str] = {}
    for item in process.get("env", ()):
        key, sep, value = item.partition("=")
        if sep:
            env[key] = value
    if "HOME" not in env:
        env["HOME"] = _home_of(process.get("user", {}).get("uid", 0))
    return env


def _home_of(uid: int) -> str:
    try:
        with open("/etc/passwd", encoding="utf-8", errors="replace") as f:
            for line in f:
                fields = line.rstrip("\n").split(":")
                if len(fields) >= 6 and fields[2] == str(uid):
                    return fields[5] or "/"
    except OSError:
        pass
    return "/"


def _find_executable(process: Config) -> str:
    name: str = process["args"][0]
    if "/" in name:
        candidates = [name]
    else:
        search = _env_of(process).get("PATH", DEFAULT_PATH)
        candidates = [os.path.join(d or ".", name) for d in search.split(":")]
    for path in candidates:
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    if "/" in name:
        if os.path.exists(name):
            raise PermissionError(f'exec: "{name}": permission denied')
        raise NotFound(f'exec: "{name}": stat {name}: no such file or directory')
    raise NotFound(f'exec: "{name}": executable file not found in $PATH')


def _exec(
    process: Config, path: str, env: dict[str, str], seccomp_filter: _Seccomp | None
) -> NoReturn:
    if seccomp_filter is not None and process.get("noNewPrivileges"):
        seccomp_filter.load()
    # Ignored signals survive an execve: the interpreter ignores SIGPIPE and SIGXFSZ,
    # and a caller may have ignored others (nohup's SIGHUP), which the container's
    # process must not inherit (``yes | head`` would get EPIPE instead of dying).
    libc.reset_signals()
    try:
        os.execve(path, list(process["args"]), env)
    except OSError as exc:
        sys.stderr.write(f"moor-runtime: exec {path}: {exc.strerror}\n")
        os._exit(127)
