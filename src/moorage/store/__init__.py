"""The image store: content blobs, metadata, layer archives, snapshots and GC."""
