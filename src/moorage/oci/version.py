"""The version of the OCI runtime specification that Moorage writes."""

from __future__ import annotations

__all__ = ["OCI_VERSION"]

# Written into generated config.json and state JSON. Reading is lenient: any non-empty
# ociVersion is accepted, because 1.x releases only add optional fields.
OCI_VERSION = "1.2.0"
