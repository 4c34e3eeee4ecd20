"""Container networking (issue 5): bridges, IPAM, port publishing, embedded DNS.

``firewall`` is the one module that speaks nftables; ``sys.netlink`` does the links
and addresses; ``ipam``, ``ports`` and ``dns`` are the engine's own logic.
"""
