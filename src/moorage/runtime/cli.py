"""``moor-runtime``: the OCI runtime with runc's command line.

argparse, not click: every container start pays this process's start-up, and
click's import alone costs about as much as a whole ``runc run`` (measured: 19 ms).
Each verb's code is imported only when that verb runs.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from moorage import __version__
from moorage.errors import InvalidArgument, MoorageError, NotSupported

DEFAULT_ROOT = "/run/moor-runtime"  # also moorage.runtime.container.DEFAULT_ROOT


def _setup_logging(args: argparse.Namespace) -> None:
    """Logging is set up only when asked for (--log, --debug): importing it costs ~4 ms."""
    import json
    import logging
    import time

    class JsonFormatter(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created))
            return json.dumps(
                {"level": record.levelname.lower(), "msg": record.getMessage(), "time": stamp}
            )

    level = logging.DEBUG if args.debug else logging.WARNING
    handler: logging.Handler = (
        logging.FileHandler(args.log) if args.log else logging.StreamHandler(sys.stderr)
    )
    if args.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="moor-runtime", description="Moorage OCI runtime")
    p.add_argument("--root", default=DEFAULT_ROOT, help="directory for container state")
    p.add_argument("--log", default=None, help="log file (default: stderr)")
    p.add_argument("--log-format", choices=("text", "json"), default="text")
    p.add_argument("--debug", action="store_true")
    p.add_argument("--systemd-cgroup", action="store_true")
    p.add_argument("--rootless", default="auto")
    p.add_argument("-v", "--version", action="store_true")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def cmd(name: str, help_text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_text, description=help_text)

    def creating(c: argparse.ArgumentParser) -> None:
        c.add_argument("-b", "--bundle", default=".")
        c.add_argument("--pid-file")
        c.add_argument("--console-socket")
        c.add_argument("--preserve-fds", type=int, default=0)
        c.add_argument("--no-pivot", action="store_true")
        c.add_argument("--no-new-keyring", action="store_true")
        c.add_argument("id")

    creating(cmd("create", "create a container"))
    run = cmd("run", "create and start a container")
    creating(run)
    run.add_argument("-d", "--detach", action="store_true")
    run.add_argument("--keep", action="store_true")
    cmd("start", "start a created container").add_argument("id")
    cmd("state", "output the state of a container").add_argument("id")
    k = cmd("kill", "send a signal to a container's init")
    k.add_argument("-a", "--all", action="store_true")
    k.add_argument("id")
    k.add_argument("signal", nargs="?", default="SIGTERM")
    d = cmd("delete", "delete a container")
    d.add_argument("-f", "--force", action="store_true")
    d.add_argument("id")
    e = cmd("exec", "run a new process inside a container")
    e.add_argument("-p", "--process")
    e.add_argument("-t", "--tty", action="store_true")
    e.add_argument("-d", "--detach", action="store_true")
    e.add_argument("--pid-file")
    e.add_argument("--console-socket")
    e.add_argument("--cwd")
    e.add_argument("-e", "--env", action="append", default=[])
    e.add_argument("-u", "--user")
    e.add_argument("--additional-gids", "-g", action="append", default=[])
    e.add_argument("-c", "--cap", action="append", default=[])
    e.add_argument("--no-new-privs", action="store_true")
    e.add_argument("--preserve-fds", type=int, default=0)
    e.add_argument("id")
    e.add_argument("args", nargs=argparse.REMAINDER)
    ls = cmd("list", "list containers")
    ls.add_argument("-f", "--format", choices=("table", "json"), default="table")
    ls.add_argument("-q", "--quiet", action="store_true")
    ps = cmd("ps", "list the processes in a container")
    ps.add_argument("-f", "--format", choices=("table", "json"), default="table")
    ps.add_argument("id")
    ps.add_argument("ps_args", nargs=argparse.REMAINDER)
    sp = cmd("spec", "write a default config.json")
    sp.add_argument("-b", "--bundle", default=".")
    sp.add_argument("--rootless", action="store_true")
    cmd("features", "show what this runtime supports")
    cmd("pause", "suspend every process of a container").add_argument("id")
    cmd("resume", "resume a paused container").add_argument("id")
    up = cmd("update", "update a container's resource limits")
    up.add_argument(
        "-r", "--resources", help="file with the linux.resources to change, or - for stdin"
    )
    for flag, what in _UPDATE_FLAGS.items():
        up.add_argument(flag, dest=_flag_dest(flag), metavar="VALUE", help=what[2])
    up.add_argument("id")
    ev = cmd("events", "print container events (OOM kills) and statistics")
    ev.add_argument("--stats", action="store_true")
    ev.add_argument("--interval", type=float, default=5.0)
    ev.add_argument("id")
    return p


def main(argv: Sequence[str] | None = None) -> NoReturn:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.version:
        _print_version()
        sys.exit(0)
    if not args.command:
        parser.print_help(sys.stderr)
        sys.exit(2)
    if args.log or args.debug:
        _setup_logging(args)
    try:
        if args.systemd_cgroup:
            raise NotSupported("the systemd cgroup driver is not supported")
        code = _dispatch(args)
    except MoorageError as exc:
        _fail(str(exc), args)
    except KeyboardInterrupt:
        sys.exit(130)
    except OSError as exc:
        _fail(f"{exc.strerror or exc}{': ' + str(exc.filename) if exc.filename else ''}", args)
    sys.stdout.flush()
    sys.exit(code)


def _fail(message: str, args: argparse.Namespace) -> NoReturn:
    if args.log or args.debug:
        import logging

        log = logging.getLogger("moor-runtime")
        if args.debug:
            log.exception("%s", message)
        else:
            log.error("%s", message)
    # A log file is for the engine that called us; a person still sees stderr.
    sys.stderr.write(f"moor-runtime: {message}\n")
    sys.exit(1)


def _print_version() -> None:
    from moorage.oci.version import OCI_VERSION

    print(f"moor-runtime version {__version__}")
    print(f"spec: {OCI_VERSION}")
    print(f"python: {sys.version.split()[0]}")
    try:
        from moorage.sys.seccomp import libseccomp_version

        print(f"libseccomp: {libseccomp_version()}")
    except MoorageError:
        pass


def _dispatch(args: argparse.Namespace) -> int:
    root = args.root
    command = args.command
    if command in ("create", "run"):
        from moorage.runtime.create import CreateOptions, create

        opts = CreateOptions(
            bundle=args.bundle,
            pid_file=args.pid_file,
            console_socket=args.console_socket,
            preserve_fds=args.preserve_fds,
        )
        if command == "create":
            create(root, args.id, opts)
            return 0
        from moorage.runtime.run import run

        return run(root, args.id, opts, detach=args.detach)
    if command == "start":
        from moorage.runtime.start import start

        start(root, args.id)
        return 0
    if command == "state":
        from moorage.runtime.state import state_json

        _print_json(state_json(root, args.id), indent=True)
        return 0
    if command == "kill":
        from moorage.runtime.kill import kill

        kill(root, args.id, args.signal, all_processes=args.all)
        return 0
    if command == "delete":
        from moorage.runtime.delete import delete

        delete(root, args.id, force=args.force)
        return 0
    if command == "exec":
        return _exec(args)
    if command == "list":
        return _list(args)
    if command == "ps":
        return _ps(args)
    if command == "spec":
        return _spec(args)
    if command == "features":
        from moorage.runtime.features import features

        _print_json(features(), indent=True)
        return 0
    if command in ("pause", "resume"):
        from moorage.runtime import pause

        getattr(pause, command)(root, args.id)
        return 0
    if command == "update":
        from moorage.runtime.update import update

        update(root, args.id, _update_resources(args))
        return 0
    if command == "events":
        from moorage.runtime.events import events

        return events(root, args.id, stats=args.stats, interval=args.interval)
    raise InvalidArgument(f"unknown command: {command}")


# runc's update flags: flag -> (linux.resources section, key, help); sizes take units.
_UPDATE_FLAGS: dict[str, tuple[str, str, str]] = {
    "--blkio-weight": ("blockIO", "weight", "block IO weight, 10 to 1000"),
    "--cpu-period": ("cpu", "period", "CPU CFS period in microseconds"),
    "--cpu-quota": ("cpu", "quota", "CPU CFS quota in microseconds (-1: unlimited)"),
    "--cpu-share": ("cpu", "shares", "CPU shares (relative weight)"),
    "--cpu-rt-period": ("cpu", "realtimePeriod", "CPU realtime period in microseconds"),
    "--cpu-rt-runtime": ("cpu", "realtimeRuntime", "CPU realtime runtime in microseconds"),
    "--cpuset-cpus": ("cpu", "cpus", "CPUs to use (0-3, 0,1)"),
    "--cpuset-mems": ("cpu", "mems", "memory nodes to use (0-3, 0,1)"),
    "--memory": ("memory", "limit", "memory limit (bytes, or with a k, m or g unit)"),
    "--memory-reservation": ("memory", "reservation", "memory soft limit"),
    "--memory-swap": ("memory", "swap", "memory plus swap limit (-1: unlimited swap)"),
    "--pids-limit": ("pids", "limit", "maximum number of processes (0 or -1: unlimited)"),
}
_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def _flag_dest(flag: str) -> str:
    return "set_" + flag.removeprefix("--").replace("-", "_")


def _update_resources(args: argparse.Namespace) -> dict[str, Any]:
    """What ``update`` changes: the --resources JSON or the flags, not both."""
    import re

    given = {f: getattr(args, _flag_dest(f)) for f in _UPDATE_FLAGS}
    given = {f: v for f, v in given.items() if v is not None}
    if args.resources is not None:
        if given:
            raise InvalidArgument(f"update: --resources cannot be combined with {min(given)}")
        return _read_resources(args.resources)
    out: dict[str, Any] = {}
    for flag, text in given.items():
        section, key, _ = _UPDATE_FLAGS[flag]
        value: int | str = text
        if key not in ("cpus", "mems"):
            match = re.fullmatch(r"(-?\d+)\s*(?:([kmgt])(?:i?b)?|b)?", text.strip().lower())
            unit = match.group(2) or "" if match else ""
            if match is None or (unit and section != "memory"):
                raise InvalidArgument(f"update: {flag}: invalid value {text!r}")
            value = int(match.group(1)) * _SIZE_UNITS[unit]
        out.setdefault(section, {})[key] = value
    return out


def _read_resources(path: str) -> dict[str, Any]:
    import orjson

    try:
        if path == "-":
            raw = sys.stdin.buffer.read()
        else:
            with open(path, "rb") as f:
                raw = f.read()
    except FileNotFoundError as exc:
        raise InvalidArgument(f"resources file does not exist: {path}") from exc
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidArgument(f"{path}: invalid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidArgument(f"{path}: expected a linux.resources object")
    return data


def _print_json(data: Any, indent: bool = False) -> None:
    import orjson

    option = orjson.OPT_INDENT_2 if indent else 0
    sys.stdout.write(orjson.dumps(data, option=option).decode() + "\n")


def _exec(args: argparse.Namespace) -> int:
    import orjson

    from moorage.runtime.container import ContainerDir
    from moorage.runtime.exec import ExecOptions, exec_process
    from moorage.runtime.run import become_subreaper, wait_child

    if args.process:
        try:
            with open(args.process, "rb") as f:
                process: dict[str, Any] = orjson.loads(f.read())
        except FileNotFoundError as exc:
            raise InvalidArgument(f"process file does not exist: {args.process}") from exc
        except orjson.JSONDecodeError as exc:
            raise InvalidArgument(f"{args.process}: invalid JSON: {exc}") from exc
    else:
        process = _process_from_flags(args, ContainerDir(args.root, args.id).read().config)
    if args.tty:
        process["terminal"] = True
    if process.get("terminal") and not args.console_socket and not args.detach:
        return _exec_with_own_tty(args, process)
    if not args.detach:
        become_subreaper()
    pid = exec_process(
        args.root,
        args.id,
        ExecOptions(
            process=process,
            pid_file=args.pid_file,
            console_socket=args.console_socket,
            preserve_fds=args.preserve_fds,
        ),
    )
    return 0 if args.detach else wait_child(pid)


def _exec_with_own_tty(args: argparse.Namespace, process: dict[str, Any]) -> int:
    import socket

    from moorage.runtime.exec import ExecOptions, exec_process
    from moorage.runtime.run import _terminal_bridge, become_subreaper, wait_child

    become_subreaper()
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with ours, theirs:
        pid = exec_process(
            args.root,
            args.id,
            ExecOptions(process=process, pid_file=args.pid_file, console_sock=theirs),
        )
        _, fds, _, _ = socket.recv_fds(ours, 1024, 1)
    master = fds[0]
    try:
        with _terminal_bridge(master):
            return wait_child(pid)
    finally:
        os.close(master)


def _process_from_flags(args: argparse.Namespace, config: dict[str, Any]) -> dict[str, Any]:
    if not args.args:
        raise InvalidArgument("exec: no command given (use ARGS... or --process)")
    base: dict[str, Any] = dict(config.get("process", {}))
    process: dict[str, Any] = {
        "terminal": bool(args.tty),
        "args": list(args.args),
        "env": list(base.get("env", [])) + list(args.env),
        "cwd": args.cwd or base.get("cwd", "/"),
        "user": dict(base.get("user", {"uid": 0, "gid": 0})),
        "noNewPrivileges": bool(args.no_new_privs or base.get("noNewPrivileges", False)),
    }
    for key in ("capabilities", "rlimits", "apparmorProfile", "selinuxLabel"):
        if key in base:
            process[key] = base[key]
    if args.user:
        uid, _, gid = args.user.partition(":")
        try:
            process["user"] = {"uid": int(uid), "gid": int(gid or 0)}
        except ValueError as exc:
            raise InvalidArgument(f"invalid --user: {args.user} (want UID[:GID])") from exc
    if args.additional_gids:
        process["user"]["additionalGids"] = [int(g) for g in args.additional_gids]
    if args.cap:
        capabilities = {k: list(v) for k, v in process.get("capabilities", {}).items()}
        for cap in args.cap:
            for key in ("bounding", "effective", "permitted"):
                capabilities.setdefault(key, [])
                if cap not in capabilities[key]:
                    capabilities[key].append(cap)
        process["capabilities"] = capabilities
    return process


def _list(args: argparse.Namespace) -> int:
    from moorage.runtime.listing import list_containers

    items = list_containers(args.root)
    if args.quiet:
        for item in items:
            print(item.id)
    elif args.format == "json":
        _print_json([i.to_dict() for i in items])
    else:
        rows = [("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")]
        rows += [(i.id, str(i.pid), i.status, i.bundle, i.created, i.owner) for i in items]
        widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
        for r in rows:
            print("   ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
    return 0


def _ps(args: argparse.Namespace) -> int:
    import subprocess

    from moorage.runtime.ps import container_pids

    pids = container_pids(args.root, args.id)
    if args.format == "json":
        _print_json(pids)
        return 0
    ps_args = [a for a in args.ps_args if a != "--"] or ["-ef"]
    out = subprocess.run(["ps", *ps_args], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise InvalidArgument(f"ps {' '.join(ps_args)}: {out.stderr.strip()}")
    lines = out.stdout.splitlines()
    if not lines:
        return 0
    header = lines[0].split()
    if "PID" not in header:
        raise InvalidArgument("ps output has no PID column")
    col = header.index("PID")
    print(lines[0])
    wanted = set(pids)
    for line in lines[1:]:
        fields = line.split()
        if len(fields) > col and fields[col].isdigit() and int(fields[col]) in wanted:
            print(line)
    return 0


def _spec(args: argparse.Namespace) -> int:
    import orjson

    from moorage.oci.default_spec import default_spec

    path = os.path.join(args.bundle, "config.json")
    if os.path.exists(path):
        raise InvalidArgument(f"file {path} exists: remove it first")
    data = default_spec(rootless=args.rootless)
    with open(path, "wb") as f:
        f.write(orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n")
    return 0


if __name__ == "__main__":
    main()
