"""What a build step produces: an image state (its layers and its config).

A state is plain data. Its :func:`state_key` names it for the cache: the same layers
and the same config give the same key, whatever produced them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from moorage.oci.descriptor import Descriptor
from moorage.oci.digest import Digest, parse_digest
from moorage.oci.image import (
    ContainerConfig,
    History,
    ImageConfig,
    RootFS,
    config_bytes,
    parse_image_config,
)

__all__ = ["ImageState", "Layer", "empty_state", "image_id", "state_key"]


@dataclass(frozen=True)
class Layer:
    descriptor: Descriptor  # the stored (compressed) blob
    diff_id: Digest  # the uncompressed tar's digest


@dataclass(frozen=True)
class ImageState:
    layers: tuple[Layer, ...]
    config: ImageConfig
    # The id of the stored image this state was read from (a base image), whose config
    # bytes may not be the ones config_bytes() writes; a derived state has none.
    stored_id: str | None = field(default=None, compare=False)

    @property
    def container_config(self) -> ContainerConfig:
        return self.config.config or ContainerConfig()

    def with_config(self, config: ContainerConfig, history: History) -> ImageState:
        """The same layers, another container config, one more (empty) history entry."""
        return ImageState(
            self.layers,
            self.config._replace(config=config, history=(*self.config.history, history)),
        )

    def with_layer(self, layer: Layer, history: History) -> ImageState:
        rootfs = RootFS("layers", (*self.config.rootfs.diff_ids, layer.diff_id))
        return ImageState(
            (*self.layers, layer),
            self.config._replace(rootfs=rootfs, history=(*self.config.history, history)),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "layers": [
                {
                    "mediaType": layer.descriptor.media_type,
                    "digest": str(layer.descriptor.digest),
                    "size": layer.descriptor.size,
                    "diffID": str(layer.diff_id),
                }
                for layer in self.layers
            ],
            "config": json.loads(config_bytes(self.config)),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImageState:
        layers = tuple(
            Layer(
                Descriptor(item["mediaType"], parse_digest(item["digest"]), int(item["size"])),
                parse_digest(item["diffID"]),
            )
            for item in data["layers"]
        )
        raw = json.dumps(data["config"]).encode()
        return cls(layers, parse_image_config(raw))


def empty_state(architecture: str, created: str) -> ImageState:
    """``FROM scratch``."""
    return ImageState(
        (),
        ImageConfig(
            created=created,
            author=None,
            architecture=architecture,
            os="linux",
            variant=None,
            config=ContainerConfig(),
            rootfs=RootFS("layers", ()),
        ),
    )


def image_id(state: ImageState) -> str:
    """The id (``sha256:...``) of the image ``state`` is, or becomes once stored: the
    digest of its config, as ``docker images`` and ``Successfully built`` show it."""
    if state.stored_id is not None:
        return state.stored_id
    return f"sha256:{hashlib.sha256(config_bytes(state.config)).hexdigest()}"


def state_key(state: ImageState) -> str:
    """A digest of the layers and the config (the history's texts included)."""
    data = json.dumps(state.to_dict(), sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(data).hexdigest()
