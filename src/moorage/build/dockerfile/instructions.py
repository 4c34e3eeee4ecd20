"""Typed Dockerfile instructions, and the expansion each one does at build time.

One frozen record per instruction; every one has a :class:`~.source.Source` (file, lines,
keyword as written). Arguments are kept as written: variables are expanded while the
stage is built, instruction by instruction, with the stage's variables at that point,
because an earlier ENV or ARG changes them. :func:`expand` does that with BuildKit's
rules about which fields expand:

======================  ==============================================================
ENV, LABEL              keys and values
COPY, ADD               sources, destination, ``--chown``, ``--chmod`` (ADD:
                        ``--checksum``); heredoc bodies unless their name was quoted
WORKDIR, USER,          their argument
STOPSIGNAL, VOLUME
EXPOSE                  each word, then split again at whitespace
RUN                     the ``--mount`` values (the command is left to the shell)
ARG                     nothing here: the default is expanded by the ARG rules
                        (``args.stage_arg_values``)
FROM                    nothing here: only global ARGs apply (``graph.resolve``)
CMD, ENTRYPOINT, SHELL  never
HEALTHCHECK, ONBUILD,
MAINTAINER
======================  ==============================================================

Example::

    copy = Copy(source, sources=("$SRC",), dest="/app/")
    done = expand(copy, {"SRC": "main.py"})
    done.instruction.sources     # ('main.py',)
    done.undefined               # frozenset(): for the UndefinedVar check
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import ClassVar, Self

from moorage.build.dockerfile.heredoc import Heredoc, parse_heredoc
from moorage.build.dockerfile.mounts import Mount, MountError, parse_mount
from moorage.build.dockerfile.source import Source
from moorage.build.dockerfile.words import Expander, ExpansionError
from moorage.oci.image import Healthcheck as HealthcheckConfig

__all__ = [
    "Add",
    "Arg",
    "ArgDef",
    "Cmd",
    "CommandLine",
    "Copy",
    "Entrypoint",
    "Env",
    "Expanded",
    "Expose",
    "From",
    "Healthcheck",
    "InlineFile",
    "Instruction",
    "KeyValue",
    "Label",
    "Maintainer",
    "Onbuild",
    "Run",
    "RunInvocation",
    "Shell",
    "StopSignal",
    "User",
    "Volume",
    "Workdir",
    "expand",
]


@dataclass(frozen=True)
class Instruction:
    """The fields every instruction has."""

    NAME: ClassVar[str] = ""
    source: Source

    @property
    def line(self) -> int:
        return self.source.lines.start

    def expand(self, ex: Expander) -> Self:
        """This instruction with its expandable fields expanded (see the module table)."""
        return self


@dataclass(frozen=True)
class KeyValue:
    key: str
    value: str
    legacy: bool = False  # written "ENV k v" rather than "ENV k=v"

    def expand(self, ex: Expander) -> KeyValue:
        return KeyValue(ex.word(self.key), ex.word(self.value), self.legacy)


@dataclass(frozen=True)
class ArgDef:
    """One name of an ARG, with its default as written (None when it has none)."""

    name: str
    default: str | None = None
    doc: str = ""  # from a comment "# <name> <description>" just above


@dataclass(frozen=True)
class InlineFile:
    """A COPY or ADD source given as a heredoc: the file ``name`` with ``data``."""

    name: str
    data: str
    expand: bool = True


@dataclass(frozen=True)
class CommandLine:
    """A RUN, CMD or ENTRYPOINT command: exec form, or one string for the shell."""

    args: tuple[str, ...]
    shell_form: bool
    files: tuple[Heredoc, ...] = ()  # RUN heredocs, in order

    def argv(self, shell: Sequence[str]) -> tuple[str, ...]:
        """The process arguments; the shell form runs ``shell`` + the joined string."""
        if self.shell_form:
            return (*shell, " ".join(self.args))
        return self.args


@dataclass(frozen=True)
class RunInvocation:
    """How to run a RUN: the argv, and a script to mount when the heredoc is one."""

    argv: tuple[str, ...]
    script: InlineFile | None = None  # mount read-only, mode 0755, at script_dir/name
    script_dir: str = "/dev/pipes"


@dataclass(frozen=True)
class From(Instruction):
    NAME = "from"
    image: str  # as written: may use global ARGs, may name an earlier stage
    name: str | None = None  # the stage name, lower-cased
    platform: str | None = None  # --platform, as written
    as_keyword: str = ""  # "AS" as written, for the casing check
    name_as_written: str = ""


@dataclass(frozen=True)
class Run(Instruction):
    NAME = "run"
    command: CommandLine
    mounts: tuple[Mount, ...] = ()  # complete unless a spec uses variables: see expand()
    mount_specs: tuple[str, ...] = ()
    network: str = "default"  # default, none or host
    security: str = "sandbox"  # sandbox or insecure

    def expand(self, ex: Expander) -> Self:
        try:
            mounts = tuple(parse_mount(spec, ex.word) for spec in self.mount_specs)
        except MountError as exc:
            raise ExpansionError(str(exc)) from None
        return replace(self, mounts=mounts)

    def invocation(self, shell: Sequence[str], *, windows: bool = False) -> RunInvocation:
        """BuildKit's handling of RUN heredocs.

        ``RUN <<EOF`` alone runs the body with the shell, or, when the body starts with
        ``#!``, as a script file; any other heredoc use hands the command line and the
        bodies to the shell, which reads them itself.
        """
        cmd = self.command
        if not cmd.files:
            return RunInvocation(cmd.argv(shell))
        first = cmd.files[0]
        if len(cmd.args) == 1 and parse_heredoc(cmd.args[0]) is not None:
            data = first.text
            if data.startswith("#!") and not windows:
                script = InlineFile(first.name, data, expand=False)
                return RunInvocation((*shell, f"/dev/pipes/{first.name}"), script)
            return RunInvocation((*shell, data))
        text = cmd.args[0] + "".join(f"\n{f.content}{f.name}" for f in cmd.files)
        return RunInvocation((*shell, text))


@dataclass(frozen=True)
class Cmd(Instruction):
    NAME = "cmd"
    command: CommandLine


@dataclass(frozen=True)
class Entrypoint(Instruction):
    NAME = "entrypoint"
    command: CommandLine


@dataclass(frozen=True)
class Shell(Instruction):
    NAME = "shell"
    shell: tuple[str, ...]


@dataclass(frozen=True)
class Env(Instruction):
    NAME = "env"
    pairs: tuple[KeyValue, ...]

    def expand(self, ex: Expander) -> Self:
        return replace(self, pairs=tuple(p.expand(ex) for p in self.pairs))


@dataclass(frozen=True)
class Label(Instruction):
    NAME = "label"
    pairs: tuple[KeyValue, ...]

    def expand(self, ex: Expander) -> Self:
        return replace(self, pairs=tuple(p.expand(ex) for p in self.pairs))


@dataclass(frozen=True)
class Arg(Instruction):
    NAME = "arg"
    args: tuple[ArgDef, ...]


@dataclass(frozen=True)
class Expose(Instruction):
    NAME = "expose"
    ports: tuple[str, ...]  # as written, e.g. "80", "8080/udp", "$PORT"

    def expand(self, ex: Expander) -> Self:
        return replace(self, ports=tuple(w for p in self.ports for w in ex.words(p)))


@dataclass(frozen=True)
class Volume(Instruction):
    NAME = "volume"
    paths: tuple[str, ...]

    def expand(self, ex: Expander) -> Self:
        return replace(self, paths=tuple(ex.word(p) for p in self.paths))


@dataclass(frozen=True)
class User(Instruction):
    NAME = "user"
    user: str

    def expand(self, ex: Expander) -> Self:
        return replace(self, user=ex.word(self.user))


@dataclass(frozen=True)
class Workdir(Instruction):
    NAME = "workdir"
    path: str

    def expand(self, ex: Expander) -> Self:
        return replace(self, path=ex.word(self.path))


@dataclass(frozen=True)
class StopSignal(Instruction):
    NAME = "stopsignal"
    signal: str

    def expand(self, ex: Expander) -> Self:
        return replace(self, signal=ex.word(self.signal))


@dataclass(frozen=True)
class Maintainer(Instruction):
    NAME = "maintainer"
    maintainer: str


@dataclass(frozen=True)
class Healthcheck(Instruction):
    """HEALTHCHECK NONE (``test == ("NONE",)``) or CMD; durations in nanoseconds."""

    NAME = "healthcheck"
    config: HealthcheckConfig


@dataclass(frozen=True)
class Copy(Instruction):
    NAME = "copy"
    sources: tuple[str, ...]  # paths, in the context or in from_
    dest: str
    contents: tuple[InlineFile, ...] = ()  # heredoc sources
    from_: str | None = None  # --from: a stage name or index, or an image
    chown: str = ""
    chmod: str = ""
    link: bool = False
    parents: bool = False
    excludes: tuple[str, ...] = ()  # --exclude patterns (.dockerignore syntax)

    def expand(self, ex: Expander) -> Self:
        return replace(
            self,
            sources=tuple(ex.word(s) for s in self.sources),
            dest=ex.word(self.dest),
            contents=_expand_contents(self.contents, ex),
            chown=ex.word(self.chown),
            chmod=ex.word(self.chmod),
        )


@dataclass(frozen=True)
class Add(Instruction):
    NAME = "add"
    sources: tuple[str, ...]  # paths in the context, URLs, git references
    dest: str
    contents: tuple[InlineFile, ...] = ()
    chown: str = ""
    chmod: str = ""
    link: bool = False
    excludes: tuple[str, ...] = ()
    checksum: str = ""  # --checksum=sha256:... for a URL or git source
    keep_git_dir: bool | None = None
    unpack: bool | None = None  # None: local archives are unpacked, URLs are not

    def expand(self, ex: Expander) -> Self:
        return replace(
            self,
            sources=tuple(ex.word(s) for s in self.sources),
            dest=ex.word(self.dest),
            contents=_expand_contents(self.contents, ex),
            chown=ex.word(self.chown),
            chmod=ex.word(self.chmod),
            checksum=ex.word(self.checksum),
        )


@dataclass(frozen=True)
class Onbuild(Instruction):
    """ONBUILD: ``trigger`` runs at the start of a stage built on this image or stage."""

    NAME = "onbuild"
    expression: str  # what the image config's OnBuild records
    trigger: Instruction


def _expand_contents(files: tuple[InlineFile, ...], ex: Expander) -> tuple[InlineFile, ...]:
    return tuple(replace(f, data=ex.heredoc(f.data)) if f.expand else f for f in files)


@dataclass(frozen=True)
class Expanded:
    instruction: Instruction
    used: frozenset[str]
    undefined: frozenset[str]


def expand(instruction: Instruction, env: Mapping[str, str], escape: str = "\\") -> Expanded:
    """Expand ``instruction`` with ``env`` (the stage's variables at this point).

    Errors are :class:`~.source.DockerfileError` at the instruction's line.
    """
    ex = Expander(env, escape)
    try:
        done = instruction.expand(ex)
    except ExpansionError as exc:
        raise instruction.source.error(str(exc)) from None
    return Expanded(done, frozenset(ex.used), frozenset(ex.undefined))
