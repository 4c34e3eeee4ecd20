"""OCI distribution: the registry client (``client/``) and server (``server/``)."""
