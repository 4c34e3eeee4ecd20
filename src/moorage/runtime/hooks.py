"""OCI lifecycle hooks: run each with the container's state JSON on its stdin.

Where each kind runs (runtime-spec "Lifecycle"): prestart and createRuntime in the
runtime's namespaces during create; createContainer in the container's namespaces
before pivot_root; startContainer in the container just before the user's program;
poststart after start and poststop after delete, both in the runtime's namespaces.
A failing hook of the first four kinds fails the operation; poststart and poststop
failures are logged and the operation goes on.
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson

from moorage.errors import FailedPrecondition

if TYPE_CHECKING:
    from moorage.oci.runtime_spec import Hook

log = logging.getLogger(__name__)


def run_hooks(hooks: Sequence[Hook], kind: str, state: dict[str, Any]) -> None:
    """Run hooks with the state JSON on stdin; the first failure aborts."""
    for hook in hooks:
        _run_one(hook.path, hook.args, hook.env, hook.timeout, kind, state)


def run_hook_dicts(hooks: Sequence[dict[str, Any]], kind: str, state: dict[str, Any]) -> None:
    """run_hooks for hooks given as their config.json objects (the init's form)."""
    for h in hooks:
        _run_one(h["path"], h.get("args", ()), h.get("env", ()), h.get("timeout"), kind, state)


def _run_one(
    path: str,
    argv: Sequence[str],
    environ: Sequence[str],
    timeout: int | None,
    kind: str,
    state: dict[str, Any],
) -> None:
    env = dict(e.split("=", 1) for e in environ if "=" in e)
    try:
        # The hook's stderr is part of its error message; its stdout goes nowhere,
        # since the container's stdio belongs to the container.
        subprocess.run(
            list(argv) or [path],
            executable=path,
            input=orjson.dumps(state),
            env=env,
            timeout=timeout,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
    except subprocess.TimeoutExpired as exc:
        raise FailedPrecondition(f"{kind} hook {path} timed out after {timeout}s") from exc
    except subprocess.CalledProcessError as exc:
        detail = exc.stderr.decode(errors="replace").strip()[-200:] if exc.stderr else ""
        raise FailedPrecondition(
            f"{kind} hook {path} failed: exit status {exc.returncode}"
            + (f": {detail}" if detail else "")
        ) from exc
    except OSError as exc:
        raise FailedPrecondition(f"{kind} hook {path}: {exc.strerror}") from exc


def run_hooks_warn(hooks: Sequence[Hook], kind: str, state: dict[str, Any]) -> None:
    """Like run_hooks, but a failure is a warning (poststart, poststop)."""
    for hook in hooks:
        try:
            run_hooks((hook,), kind, state)
        except FailedPrecondition as exc:
            log.warning("%s", exc)


def run_hook_dicts_warn(hooks: Sequence[dict[str, Any]], kind: str, state: dict[str, Any]) -> None:
    """run_hook_dicts, but a failure is a warning (poststart, poststop)."""
    for hook in hooks:
        try:
            run_hook_dicts((hook,), kind, state)
        except FailedPrecondition as exc:
            log.warning("%s", exc)
