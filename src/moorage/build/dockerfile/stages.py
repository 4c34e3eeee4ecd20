"""A Dockerfile as stages: the global ARGs, then one stage per FROM.

ARG instructions before the first FROM are the global ("meta") ARGs: they are visible to
FROM lines only, and inside a stage only after an ``ARG name`` there declares them again.
Everything after a FROM belongs to that stage; any other instruction before the first
FROM is an error. Stages are numbered from 0 and may be named (``FROM x AS build``,
names are case-insensitive and stored lower-cased)::

    ARG BASE=alpine          meta_args
    FROM $BASE AS build      stages[0], name "build"
    RUN make
    FROM scratch             stages[1], no name ("stage-1")
    COPY --from=build /out /

``parse_dockerfile`` checks everything that can be checked without build arguments;
``graph.resolve`` expands the FROM lines and links the stages.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from moorage.build.dockerfile.convert import to_instruction
from moorage.build.dockerfile.directives import Directives
from moorage.build.dockerfile.instructions import Arg, From, Instruction
from moorage.build.dockerfile.parser import parse_nodes
from moorage.build.dockerfile.source import DockerfileError, Lines

__all__ = ["Dockerfile", "Stage", "parse_dockerfile", "parse_trigger"]


@dataclass(frozen=True)
class Stage:
    index: int
    from_: From
    instructions: tuple[Instruction, ...]

    @property
    def name(self) -> str | None:
        return self.from_.name

    @property
    def display_name(self) -> str:
        """The name, or ``stage-N`` as BuildKit calls unnamed stages."""
        return self.from_.name or f"stage-{self.index}"


@dataclass(frozen=True)
class Dockerfile:
    file: str
    directives: Directives
    meta_args: tuple[Arg, ...]
    stages: tuple[Stage, ...]
    empty_continuations: tuple[Lines, ...] = ()

    @property
    def escape(self) -> str:
        return self.directives.escape

    def stage_named(self, name: str) -> Stage | None:
        """The last stage with this name (case-insensitive), as later references see it."""
        wanted = name.lower()
        found = [s for s in self.stages if s.name == wanted]
        return found[-1] if found else None


def parse_dockerfile(text: str | bytes, file: str = "Dockerfile") -> Dockerfile:
    """Parse and check a Dockerfile; errors are :class:`DockerfileError` naming ``file``."""
    parsed = parse_nodes(text, file)
    meta: list[Arg] = []
    stages: list[tuple[From, list[Instruction]]] = []
    for node in parsed.nodes:
        instruction = to_instruction(node, file)
        if isinstance(instruction, From):
            stages.append((instruction, []))
        elif stages:
            stages[-1][1].append(instruction)
        elif isinstance(instruction, Arg):
            meta.append(instruction)
        else:
            raise instruction.source.error(
                f"no build stage in current context: {node.keyword.upper()} must come after "
                "a FROM (only ARG may come before the first FROM)"
            )
    if not stages:
        raise DockerfileError(file, None, "no stages to build: the Dockerfile has no FROM")
    return Dockerfile(
        file=file,
        directives=parsed.directives,
        meta_args=tuple(meta),
        stages=tuple(Stage(n, f, tuple(rest)) for n, (f, rest) in enumerate(stages)),
        empty_continuations=parsed.empty_continuations,
    )


def parse_trigger(expression: str, at: From) -> Instruction:
    """An ONBUILD trigger from a base image's config, located at the FROM that uses it.

    Triggers of a base *stage* are already parsed (``graph.ResolvedStage.triggers``);
    this is for images, whose config records them as text.
    """
    parsed = parse_nodes(expression, at.source.file)
    if len(parsed.nodes) != 1:
        raise at.source.error("onbuild trigger should be a single expression")
    node = replace(parsed.nodes[0], lines=at.source.lines)
    trigger = to_instruction(node, at.source.file)
    if isinstance(trigger, From):
        raise at.source.error("FROM isn't allowed as an ONBUILD trigger")
    return trigger
