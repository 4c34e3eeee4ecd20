"""Checking parsed nodes and turning them into typed instructions.

This module owns what each instruction accepts: its flags, the number and shape of its
arguments, and the errors for everything else, each located at the instruction's first
line (``Dockerfile:7: unknown instruction "RUNN" (did you mean "RUN"?)``). It does not
expand variables (``instructions.expand``) or know about stages (``stages``).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Sequence

from moorage.build.dockerfile import instructions as i
from moorage.build.dockerfile.durations import DurationError, parse_duration
from moorage.build.dockerfile.flags import BOOL, STRING, STRINGS, FlagError, FlagKind, Flags
from moorage.build.dockerfile.heredoc import Heredoc, chomp, parse_heredoc
from moorage.build.dockerfile.mounts import MountError, parse_mount
from moorage.build.dockerfile.parser import Node
from moorage.build.dockerfile.source import Source, quoted
from moorage.build.dockerfile.words import ExpansionError, ShellLexer
from moorage.oci.image import Healthcheck as HealthcheckConfig

__all__ = ["KEYWORDS", "to_instruction"]

_STAGE_NAME = re.compile(r"[a-z][a-z0-9-_.]*\Z")
_ONBUILD_PREFIX = re.compile(r"^\s*ONBUILD\s*", re.IGNORECASE)
_MS = 1_000_000  # nanoseconds
_NO_VARIABLES = ShellLexer()


class _Invalid(Exception):
    """An instruction that cannot be built; converted to a located DockerfileError."""


def to_instruction(node: Node, file: str) -> i.Instruction:
    """The typed instruction for ``node``; :class:`~.source.DockerfileError` if invalid."""
    source = Source(file, node.lines, node.keyword, node.original, node.comments)
    build = _BUILDERS.get(node.keyword.lower())
    if build is None:
        raise source.error(f"unknown instruction {quoted(node.keyword)}{_suggest(node.keyword)}")
    try:
        return build(node, source)
    except (_Invalid, FlagError, MountError, ExpansionError) as exc:
        raise source.error(str(exc)) from None


def _suggest(keyword: str) -> str:
    close = difflib.get_close_matches(keyword.upper(), [k.upper() for k in KEYWORDS], n=1)
    return f" (did you mean {quoted(close[0])}?)" if close else ""


def _flags(node: Node, declared: dict[str, FlagKind] | None = None) -> Flags:
    return Flags(node.flags, declared or {})


def _exactly_one(node: Node) -> str:
    _flags(node)
    if len(node.args) != 1:
        raise _Invalid(f"{node.keyword.upper()} requires exactly one argument")
    return node.args[0]


def _at_least_one(node: Node) -> None:
    if not node.args:
        raise _Invalid(f"{node.keyword.upper()} requires at least one argument")


def _from(node: Node, source: Source) -> i.From:
    flags = _flags(node, {"platform": STRING})
    args = node.args
    if len(args) == 3 and args[1].lower() == "as":
        name = args[2].lower()
        if _STAGE_NAME.match(name) is None:
            raise _Invalid(
                f"invalid name for build stage: {quoted(args[2])}, "
                "name can't start with a number or contain symbols"
            )
        return i.From(
            source,
            image=args[0],
            name=name,
            platform=flags.string("platform") or None,
            as_keyword=args[1],
            name_as_written=args[2],
        )
    if len(args) != 1:
        raise _Invalid("FROM requires either one or three arguments")
    return i.From(source, image=args[0], platform=flags.string("platform") or None)


def _key_values(node: Node) -> tuple[i.KeyValue, ...]:
    _flags(node)
    _at_least_one(node)
    args = node.args
    pairs = []
    for at in range(0, len(args) - 2, 3):
        key, value, separator = args[at : at + 3]
        if not key:
            raise _Invalid(f"{node.keyword.upper()} names can not be blank")
        pairs.append(i.KeyValue(key, value, legacy=separator == ""))
    return tuple(pairs)


def _env(node: Node, source: Source) -> i.Env:
    return i.Env(source, _key_values(node))


def _label(node: Node, source: Source) -> i.Label:
    return i.Label(source, _key_values(node))


def _arg(node: Node, source: Source) -> i.Arg:
    _flags(node)
    _at_least_one(node)
    defs = []
    for word in node.args:
        name, sep, default = word.partition("=")
        if not name:
            raise _Invalid("ARG names can not be blank")
        doc = _doc_comment(source.comments, name)
        defs.append(i.ArgDef(name, default if sep else None, doc))
    return i.Arg(source, tuple(defs))


def _doc_comment(comments: Sequence[str], name: str) -> str:
    for line in comments:
        if line.startswith(name + " "):
            return line[len(name) + 1 :]
    return ""


def _command(node: Node) -> i.CommandLine:
    args = node.args if node.json or not node.args else (" ".join(node.args),)
    return i.CommandLine(tuple(args), shell_form=not node.json, files=node.heredocs)


def _run(node: Node, source: Source) -> i.Run:
    flags = _flags(node, {"mount": STRINGS, "network": STRING, "security": STRING})
    network = flags.string("network", "default")
    if network not in ("default", "none", "host"):
        raise _Invalid(f"invalid network mode {quoted(network)}")
    security = flags.string("security", "sandbox")
    if security not in ("sandbox", "insecure"):
        raise _Invalid(f"security {quoted(security)} is not valid")
    specs = flags.strings("mount")
    return i.Run(
        source,
        command=_command(node),
        mounts=tuple(parse_mount(spec) for spec in specs),
        mount_specs=specs,
        network=network,
        security=security,
    )


def _cmd(node: Node, source: Source) -> i.Cmd:
    _flags(node)
    return i.Cmd(source, _command(node))


def _entrypoint(node: Node, source: Source) -> i.Entrypoint:
    _flags(node)
    return i.Entrypoint(source, _command(node))


def _shell(node: Node, source: Source) -> i.Shell:
    _flags(node)
    _at_least_one(node)
    if not node.json:
        raise _Invalid("SHELL requires the arguments to be in JSON form")
    return i.Shell(source, node.args)


_COPY_FLAGS = {
    "chown": STRING,
    "chmod": STRING,
    "link": BOOL,
    "exclude": STRINGS,
    "from": STRING,
    "parents": BOOL,
}
_ADD_FLAGS = {
    "chown": STRING,
    "chmod": STRING,
    "link": BOOL,
    "exclude": STRINGS,
    "checksum": STRING,
    "keep-git-dir": BOOL,
    "unpack": BOOL,
}


def _sources(node: Node) -> tuple[tuple[str, ...], tuple[i.InlineFile, ...], str]:
    """Paths, heredoc files and the destination of COPY or ADD."""
    keyword = node.keyword.upper()
    if len(node.args) < 2:
        raise _Invalid(
            f"{keyword} requires at least two arguments, but only one was provided; "
            "destination could not be determined"
        )
    *sources, dest = node.args
    if node.json:
        return tuple(sources), (), dest
    if parse_heredoc(dest) is not None:
        raise _Invalid(f"{keyword} cannot accept a heredoc as a destination")
    bodies = {h.name: h for h in node.heredocs}
    paths: list[str] = []
    files: list[i.InlineFile] = []
    for src in sources:
        heredoc = parse_heredoc(src)
        if heredoc is None:
            paths.append(src)
            continue
        body = bodies.get(heredoc.name, Heredoc(heredoc.name))
        text = chomp(body.content) if heredoc.chomp else body.content
        files.append(i.InlineFile(heredoc.name, text, heredoc.expand))
    return tuple(paths), tuple(files), dest


def _copy(node: Node, source: Source) -> i.Copy:
    flags = _flags(node, _COPY_FLAGS)
    paths, files, dest = _sources(node)
    from_ = flags.string("from") or None
    if from_ is not None and _NO_VARIABLES.expand(from_, {}).value != from_:
        raise _Invalid(
            "variable expansion is not supported for --from, define a new stage with "
            "FROM using ARG from global scope as a workaround"
        )
    return i.Copy(
        source,
        sources=paths,
        dest=dest,
        contents=files,
        from_=from_,
        chown=flags.string("chown"),
        chmod=flags.string("chmod"),
        link=flags.flag("link"),
        parents=flags.flag("parents"),
        excludes=flags.strings("exclude"),
    )


def _add(node: Node, source: Source) -> i.Add:
    flags = _flags(node, _ADD_FLAGS)
    paths, files, dest = _sources(node)
    return i.Add(
        source,
        sources=paths,
        dest=dest,
        contents=files,
        chown=flags.string("chown"),
        chmod=flags.string("chmod"),
        link=flags.flag("link"),
        excludes=flags.strings("exclude"),
        checksum=flags.string("checksum"),
        keep_git_dir=flags.optional_flag("keep-git-dir"),
        unpack=flags.optional_flag("unpack"),
    )


def _expose(node: Node, source: Source) -> i.Expose:
    _flags(node)
    _at_least_one(node)
    return i.Expose(source, tuple(sorted(node.args)))


def _volume(node: Node, source: Source) -> i.Volume:
    _flags(node)
    _at_least_one(node)
    paths = tuple(p.strip() for p in node.args)
    if "" in paths:
        raise _Invalid("VOLUME specified can not be an empty string")
    return i.Volume(source, paths)


def _user(node: Node, source: Source) -> i.User:
    return i.User(source, _exactly_one(node))


def _workdir(node: Node, source: Source) -> i.Workdir:
    return i.Workdir(source, _exactly_one(node))


def _stopsignal(node: Node, source: Source) -> i.StopSignal:
    return i.StopSignal(source, _exactly_one(node))


def _maintainer(node: Node, source: Source) -> i.Maintainer:
    return i.Maintainer(source, _exactly_one(node))


_HEALTH_FLAGS = {
    "interval": STRING,
    "timeout": STRING,
    "start-period": STRING,
    "start-interval": STRING,
    "retries": STRING,
}


def _healthcheck(node: Node, source: Source) -> i.Healthcheck:
    _at_least_one(node)
    kind, *rest = node.args
    kind = kind.upper()
    if kind == "NONE":
        if rest:
            raise _Invalid("HEALTHCHECK NONE takes no arguments")
        return i.Healthcheck(source, HealthcheckConfig(test=("NONE",)))
    flags = _flags(node, _HEALTH_FLAGS)
    if kind != "CMD":
        raise _Invalid(f"unknown type {quoted(kind)} in HEALTHCHECK (try CMD)")
    if not rest:
        raise _Invalid("missing command after HEALTHCHECK CMD")
    test = ("CMD", *rest) if node.json else ("CMD-SHELL", " ".join(rest))
    config = HealthcheckConfig(
        test=test,
        interval=_interval(flags, "interval"),
        timeout=_interval(flags, "timeout"),
        start_period=_interval(flags, "start-period"),
        start_interval=_interval(flags, "start-interval"),
        retries=_retries(flags.string("retries")),
    )
    return i.Healthcheck(source, config)


def _interval(flags: Flags, name: str) -> int:
    text = flags.string(name)
    if not text:
        return 0
    try:
        value = parse_duration(text)
    except DurationError as exc:
        raise _Invalid(f"--{name}: {exc}") from None
    if 0 < value < _MS or value < 0:
        raise _Invalid(f"--{name} cannot be less than 1ms: {text}")
    return value


def _retries(text: str) -> int:
    if not text:
        return 0
    if re.fullmatch(r"[+-]?[0-9]+", text) is None or not -(2**31) <= int(text) < 2**31:
        raise _Invalid(f"--retries: invalid number {quoted(text)}")
    if int(text) < 0:
        raise _Invalid(f"--retries cannot be negative ({int(text)})")
    return int(text)


def _onbuild(node: Node, source: Source) -> i.Onbuild:
    _flags(node)
    child = node.child
    if child is None:
        raise _Invalid("ONBUILD requires at least one argument")
    keyword = child.keyword.upper()
    if keyword == "ONBUILD":
        raise _Invalid("chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
    if keyword in ("FROM", "MAINTAINER"):
        raise _Invalid(f"{keyword} isn't allowed as an ONBUILD trigger")
    expression = _ONBUILD_PREFIX.sub("", node.original, count=1)
    expression += "".join(f"\n{h.content}{h.name}" for h in node.heredocs)
    return i.Onbuild(source, expression=expression, trigger=to_instruction(child, source.file))


_BUILDERS: dict[str, Callable[[Node, Source], i.Instruction]] = {
    "add": _add,
    "arg": _arg,
    "cmd": _cmd,
    "copy": _copy,
    "entrypoint": _entrypoint,
    "env": _env,
    "expose": _expose,
    "from": _from,
    "healthcheck": _healthcheck,
    "label": _label,
    "maintainer": _maintainer,
    "onbuild": _onbuild,
    "run": _run,
    "shell": _shell,
    "stopsignal": _stopsignal,
    "user": _user,
    "volume": _volume,
    "workdir": _workdir,
}

KEYWORDS = tuple(_BUILDERS)
