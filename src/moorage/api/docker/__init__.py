"""Docker Engine API routes served by ``moor daemon``, in Docker's shapes."""
