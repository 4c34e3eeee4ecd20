"""The OCI runtime: ``moor-runtime`` on the command line (``cli``), and the same
verbs in-process for the engine (``api``). One module per verb; the container's
init lives in ``init``, the rootfs in ``rootfs``, cgroups in ``cgroups``.

Nothing is imported here, so that the CLI pays only for the verb it runs.
"""
