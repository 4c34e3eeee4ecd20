"""The Dockerfile frontend: text to typed instructions, stages and a stage graph.

Pure logic with BuildKit's semantics; the executor builds on it. The layers, bottom up:

- ``words``: the shell-word lexer and variable expansion (``$v``, ``${v:-w}``, ...);
- ``directives``, ``heredoc``, ``arguments``, ``parser``: the file's layout (directives,
  escapes, continuations, comments, heredoc bodies) into one node per instruction;
- ``flags``, ``mounts``, ``durations``, ``convert``, ``instructions``: typed, checked
  instruction records, and the expansion each one does at build time;
- ``stages``, ``args``, ``graph``: global and per-stage ARGs, FROM resolution, and the
  stage graph (``stages_for(target)``, ``parallel_groups``);
- ``lint``: BuildKit-style warnings.

Typical use::

    df = parse_dockerfile(Path("Dockerfile").read_bytes(), "Dockerfile")
    lint(df).check()
    graph = resolve(df, build_args=args, defaults=platform_args(host, target, name))
    for group in graph.parallel_groups(name):
        ...  # each stage of a group may be built at the same time

All errors are :class:`DockerfileError` (an ``InvalidArgument``) naming the file and line.
"""

from __future__ import annotations

from moorage.build.dockerfile.args import (
    DEFAULT_PATH,
    PLATFORM_ARGS,
    ArgValue,
    GlobalArgs,
    global_args,
    platform_args,
    stage_arg_values,
)
from moorage.build.dockerfile.directives import CheckOptions, Directives
from moorage.build.dockerfile.graph import BuildGraph, Reference, ResolvedStage, resolve
from moorage.build.dockerfile.heredoc import Heredoc
from moorage.build.dockerfile.instructions import (
    Add,
    Arg,
    ArgDef,
    Cmd,
    CommandLine,
    Copy,
    Entrypoint,
    Env,
    Expanded,
    Expose,
    From,
    Healthcheck,
    InlineFile,
    Instruction,
    KeyValue,
    Label,
    Maintainer,
    Onbuild,
    Run,
    RunInvocation,
    Shell,
    StopSignal,
    User,
    Volume,
    Workdir,
    expand,
)
from moorage.build.dockerfile.lint import Linter, LintResult, LintWarning, lint
from moorage.build.dockerfile.mounts import Mount, parse_mount
from moorage.build.dockerfile.source import DockerfileError, Lines, Source
from moorage.build.dockerfile.stages import Dockerfile, Stage, parse_dockerfile, parse_trigger
from moorage.build.dockerfile.words import Expander, Expansion, ExpansionError, ShellLexer

__all__ = [
    "DEFAULT_PATH",
    "PLATFORM_ARGS",
    "Add",
    "Arg",
    "ArgDef",
    "ArgValue",
    "BuildGraph",
    "CheckOptions",
    "Cmd",
    "CommandLine",
    "Copy",
    "Directives",
    "Dockerfile",
    "DockerfileError",
    "Entrypoint",
    "Env",
    "Expanded",
    "Expander",
    "Expansion",
    "ExpansionError",
    "Expose",
    "From",
    "GlobalArgs",
    "Healthcheck",
    "Heredoc",
    "InlineFile",
    "Instruction",
    "KeyValue",
    "Label",
    "Lines",
    "LintResult",
    "LintWarning",
    "Linter",
    "Maintainer",
    "Mount",
    "Onbuild",
    "Reference",
    "ResolvedStage",
    "Run",
    "RunInvocation",
    "Shell",
    "ShellLexer",
    "Source",
    "Stage",
    "StopSignal",
    "User",
    "Volume",
    "Workdir",
    "expand",
    "global_args",
    "lint",
    "parse_dockerfile",
    "parse_mount",
    "parse_trigger",
    "platform_args",
    "resolve",
    "stage_arg_values",
]
