"""The runtime's in-process API: what the engine calls from a warm process.

    from moorage.runtime import api

    api.create(root, "web", api.CreateOptions(bundle="/path/to/bundle"))
    api.start(root, "web")
    api.kill(root, "web", "SIGTERM")
    api.update(root, "web", {"memory": {"limit": 67108864, "swap": 134217728}})
    api.delete(root, "web", force=True)

Same semantics and errors as the ``moor-runtime`` verbs of the same names. A
long-running caller should call ``start_zygote()`` once: every later create and
exec then forks a warm stage instead of starting an interpreter.
"""

from __future__ import annotations

from moorage.runtime.cgroups.primer import prime_cgroup_attach
from moorage.runtime.create import CreateOptions, create
from moorage.runtime.delete import delete
from moorage.runtime.exec import ExecOptions, exec_process
from moorage.runtime.features import features
from moorage.runtime.kill import kill, parse_signal
from moorage.runtime.listing import Summary, list_containers
from moorage.runtime.pause import pause, resume
from moorage.runtime.ps import container_pids
from moorage.runtime.run import become_subreaper, run, wait_child
from moorage.runtime.spawn import start_zygote, stop_zygote
from moorage.runtime.start import start
from moorage.runtime.state import state
from moorage.runtime.update import update

__all__ = [
    "CreateOptions",
    "ExecOptions",
    "Summary",
    "become_subreaper",
    "container_pids",
    "create",
    "delete",
    "exec_process",
    "features",
    "kill",
    "list_containers",
    "parse_signal",
    "pause",
    "prime_cgroup_attach",
    "resume",
    "run",
    "start",
    "start_zygote",
    "state",
    "stop_zygote",
    "update",
    "wait_child",
]
