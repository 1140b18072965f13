"""Load a backbone from a local diffusers folder: its pipeline ``_class_name`` picks the implementation."""

from __future__ import annotations

from pathlib import Path

from dysen.backbones.base import Backbone, BackboneGeometry, BackboneOptions
from dysen.backbones.components import INDEX_NAME, BackboneFolderError, FolderIndex, read_index
from dysen.backbones.dysen_wan import PIPELINE_CLASS, DysenWanBackbone
from dysen.backbones.unet3d import UNet3DBackbone
from dysen.backbones.wan import WanBackbone

BACKBONES: dict[str, type[Backbone]] = {
    "WanPipeline": WanBackbone,  # Wan 2.1 / 2.2 text-to-video
    "TextToVideoSDPipeline": UNet3DBackbone,  # ModelScope T2V, ZeroScope
    PIPELINE_CLASS: DysenWanBackbone,  # a Wan transformer trained by dysen (per-frame VAE, MiniLM)
}
"""Pipeline class of ``model_index.json`` -> the backbone that loads it."""

WEIGHTS = Path(__file__).resolve().parents[1] / "weights"
SHIPPED_BACKBONES = {"shapes-wan-tiny": WEIGHTS / "shapes-wan-tiny"}
"""The backbones trained here and shipped inside the package: name -> folder (with its model card, README.md)."""
SHIPPED_ADAPTERS = {"shapes-wan-tiny-adapter": WEIGHTS / "shapes-wan-tiny-adapter"}
"""The DSG adapters trained here and shipped inside the package: name -> folder (with its model card)."""


def backbone_folder(folder: str | Path) -> Path:
    """The folder a ``--backbone`` value means: a path, or the name of a shipped backbone (``SHIPPED_BACKBONES``)
    when no file or folder of that name exists here."""
    return _shipped_or_path(folder, SHIPPED_BACKBONES)


def adapter_folder(folder: str | Path) -> Path:
    """The folder an ``--adapter`` value means: a path, or the name of a shipped adapter (``SHIPPED_ADAPTERS``)
    when no file or folder of that name exists here."""
    return _shipped_or_path(folder, SHIPPED_ADAPTERS)


def _shipped_or_path(folder: str | Path, shipped: dict[str, Path]) -> Path:
    path = Path(folder)
    named = shipped.get(str(folder))
    return named if named is not None and not path.exists() else path


def backbone_class(folder: str | Path) -> tuple[type[Backbone], FolderIndex]:
    """The backbone implementation of the local diffusers folder ``folder`` (never a hub id; a shipped
    backbone's name) and its index."""
    index = read_index(backbone_folder(folder))
    cls = BACKBONES.get(index.pipeline_class)
    if cls is None:
        raise BackboneFolderError(
            f"{index.folder / INDEX_NAME} describes a {index.pipeline_class} (components: "
            f"{', '.join(f'{k}={v}' for k, v in sorted(index.components.items())) or 'none'}); dysen loads "
            f"{' and '.join(BACKBONES)} folders as backbones"
        )
    return cls, index


def read_geometry(folder: str | Path) -> BackboneGeometry:
    """The latent and token geometry of the backbone in ``folder``, from its configs (no weights are read): check
    a request's frames and size with it before loading."""
    cls, index = backbone_class(folder)
    return cls.read_geometry(index)


def load_backbone(folder: str | Path, options: BackboneOptions | None = None) -> Backbone:
    """The backbone in the local diffusers folder ``folder`` (never a hub id; a shipped backbone's name), loaded
    with ``options``."""
    cls, index = backbone_class(folder)
    return cls(index, options or BackboneOptions())
