"""Compose: a project of services described in compose files, run on the engine.

``loader`` reads the files into a checked ``model.Project`` (``interpolate``,
``envfile``, ``schema`` and ``merge`` are its steps); ``planner`` compares the project
with the containers the engine has and decides what to create, recreate, keep or
remove; ``runner`` carries that out through the engine API (``moorage.api.client``),
so a remote daemon serves as well as a local one; ``logs`` interleaves the output of
a project's containers. ``moor compose`` (``moorage.cli.compose``) is the command line.
"""
