"""The image builder (``moor build``).

``build.dockerfile`` turns a Dockerfile into typed instructions, stages and a stage graph,
and expands words the way BuildKit does; ``build.dockerignore`` decides which files of the
build context are sent. Both are pure logic: no engine, no kernel, no root. The executor
that runs the steps builds on them.
"""
