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
from typing import Any

import orjson

from moorage.errors import FailedPrecondition
from moorage.oci.runtime_spec import Hook

log = logging.getLogger(__name__)


def run_hooks(hooks: tuple[Hook, ...], kind: str, state: dict[str, Any]) -> None:
    """Run hooks with the state JSON on stdin; the first failure aborts."""
    payload = orjson.dumps(state)
    for hook in hooks:
        env = dict(e.split("=", 1) for e in hook.env if "=" in e)
        args = list(hook.args) or [hook.path]
        try:
            subprocess.run(
                args,
                executable=hook.path,
                input=payload,
                env=env,
                timeout=hook.timeout,
                check=True,
                stdout=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as exc:
            raise FailedPrecondition(
                f"{kind} hook {hook.path} timed out after {hook.timeout}s"
            ) from exc
        except subprocess.CalledProcessError as exc:
            raise FailedPrecondition(
                f"{kind} hook {hook.path} failed: exit status {exc.returncode}"
            ) from exc
        except OSError as exc:
            raise FailedPrecondition(f"{kind} hook {hook.path}: {exc.strerror}") from exc


def run_hooks_warn(hooks: tuple[Hook, ...], kind: str, state: dict[str, Any]) -> None:
    """Like run_hooks, but a failure is a warning (poststart, poststop)."""
    for hook in hooks:
        try:
            run_hooks((hook,), kind, state)
        except FailedPrecondition as exc:
            log.warning("%s", exc)
