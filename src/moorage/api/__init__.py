"""The Docker Engine API: the daemon's server routes and the CLI's client."""
