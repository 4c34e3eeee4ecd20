"""The engine: images, containers, volumes, networks; what the daemon serves."""
