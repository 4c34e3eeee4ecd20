"""ARG scoping: which value each ARG has, with BuildKit's rules.

- The global scope holds the automatic platform ARGs (``BUILDPLATFORM``,
  ``TARGETARCH``, ...) and the ARGs before the first FROM, in order; a ``--build-arg``
  overrides a declared ARG's default (and a platform ARG); a default may use the ARGs
  before it. Only FROM lines see the global scope.
- Inside a stage an ``ARG name`` makes a name visible from that line on: its value is
  the ``--build-arg`` if given, else its default (expanded with the stage's variables at
  that point), else the global value of the same name, else none (declared, unset).
- A stage built on another stage (``FROM build``) starts with that stage's variables and
  declared ARGs. A build argument that no ARG declares is not visible anywhere.

The executor keeps a stage's variables as one ordered mapping (the base image's ENV,
then every ENV and ARG value in order, the last writer winning) and calls
:func:`stage_arg_values` for each ARG::

    scope = global_args(df.meta_args, build_args={"V": "2"}, defaults=platform_args(...))
    for value in stage_arg_values(arg, env=env, build_args=..., global_values=scope.values):
        if value.value is not None:
            env[value.name] = value.value    # visible to later expansion and to RUN
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from moorage.build.dockerfile.instructions import Arg
from moorage.build.dockerfile.words import Expansion, ExpansionError, ShellLexer
from moorage.oci.platform import Platform

__all__ = [
    "DEFAULT_PATH",
    "PLATFORM_ARGS",
    "ArgValue",
    "GlobalArgs",
    "global_args",
    "platform_args",
    "stage_arg_values",
]

# What BuildKit sets when the base image has no PATH (scratch, for one).
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

PLATFORM_ARGS = (
    "BUILDPLATFORM",
    "BUILDOS",
    "BUILDOSVERSION",
    "BUILDARCH",
    "BUILDVARIANT",
    "TARGETPLATFORM",
    "TARGETOS",
    "TARGETOSVERSION",
    "TARGETARCH",
    "TARGETVARIANT",
    "TARGETSTAGE",
)


def platform_args(build: Platform, target: Platform, target_stage: str | None) -> dict[str, str]:
    """The automatic ARGs for a build on ``build`` producing ``target``."""
    return {
        "BUILDPLATFORM": str(build),
        "BUILDOS": build.os,
        "BUILDOSVERSION": build.os_version or "",
        "BUILDARCH": build.architecture,
        "BUILDVARIANT": build.variant or "",
        "TARGETPLATFORM": str(target),
        "TARGETOS": target.os,
        "TARGETOSVERSION": target.os_version or "",
        "TARGETARCH": target.architecture,
        "TARGETVARIANT": target.variant or "",
        "TARGETSTAGE": target_stage or "default",
    }


@dataclass(frozen=True)
class GlobalArgs:
    values: Mapping[str, str]  # what FROM lines are expanded with
    declared: frozenset[str]  # every global ARG name, with or without a value


@dataclass(frozen=True)
class ArgValue:
    name: str
    value: str | None  # None: declared without a value
    undefined: frozenset[str] = frozenset()  # unset names the default referred to


def global_args(
    meta_args: Sequence[Arg],
    *,
    build_args: Mapping[str, str],
    defaults: Mapping[str, str],
    escape: str = "\\",
) -> GlobalArgs:
    """The global scope; errors are located at the ARG that caused them."""
    values = {k: build_args.get(k, v) for k, v in defaults.items()}
    declared: set[str] = set()
    lexer = ShellLexer(escape)
    for arg in meta_args:
        for d in arg.args:
            declared.add(d.name)
            if d.name in build_args:
                values[d.name] = build_args[d.name]
            elif d.default is not None:
                values[d.name] = _expand(lexer, arg, d.default, values).value
    return GlobalArgs(values, frozenset(declared))


def stage_arg_values(
    arg: Arg,
    *,
    env: Mapping[str, str],
    build_args: Mapping[str, str],
    global_values: Mapping[str, str],
    escape: str = "\\",
) -> tuple[ArgValue, ...]:
    """The values an ARG inside a stage gives its names, in order."""
    current = dict(env)
    lexer = ShellLexer(escape)
    out: list[ArgValue] = []
    for d in arg.args:
        if d.name in build_args:
            value = ArgValue(d.name, build_args[d.name])
        elif d.default is not None:
            expansion = _expand(lexer, arg, d.default, current)
            value = ArgValue(d.name, expansion.value, expansion.undefined)
        else:
            value = ArgValue(d.name, global_values.get(d.name))
        if value.value is not None:
            current[d.name] = value.value
        out.append(value)
    return tuple(out)


def _expand(lexer: ShellLexer, arg: Arg, word: str, env: Mapping[str, str]) -> Expansion:
    try:
        return lexer.expand(word, env)
    except ExpansionError as exc:
        raise arg.source.error(str(exc)) from None
