"""A local diffusers-format folder: its ``model_index.json`` and the components it names, loaded by class.

diffusers writes a pipeline folder as ``model_index.json`` (``"_class_name"``: the pipeline; each component:
``[library, class]``, or ``[null, null]`` when absent) and one subfolder per component. ``COMPONENT_CLASSES`` is
the explicit list of the classes dysen loads: anything else is refused with what was found. Weights load with
``from_pretrained(path, local_files_only=True, use_safetensors=True)``: never from a hub, never from a pickle.

Two entries are dysen's own (library ``"dysen"``), for the models this project trains in the same format
(``dysen.backbones.dysen_wan``): its per-frame ``KLVideoAutoencoder`` (safetensors, like any model) and the MiniLM
text encoder, a ``reference``: a config naming the bundled all-MiniLM-L6-v2 (or a local folder), no weights copied.
"""


from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from dysen.backbones.base import BackboneError

INDEX_NAME = "model_index.json"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


class BackboneFolderError(BackboneError):
    """A backbone folder is missing, not local, not diffusers-format, unsupported, or incomplete."""


@dataclass(frozen=True)
class ComponentClass:
    """How a component class of ``model_index.json`` loads: its library and what kind of thing it is."""

    library: Literal["diffusers", "transformers", "dysen"]
    kind: Literal["model", "tokenizer", "scheduler", "reference"]  # models carry weights (safetensors); a
    # reference names pretrained weights kept elsewhere (the bundled MiniLM); the rest are configs


COMPONENT_CLASSES: dict[str, ComponentClass] = {
    # denoisers and VAEs
    "WanTransformer3DModel": ComponentClass("diffusers", "model"),
    "AutoencoderKLWan": ComponentClass("diffusers", "model"),
    "UNet3DConditionModel": ComponentClass("diffusers", "model"),
    "AutoencoderKL": ComponentClass("diffusers", "model"),
    # text encoders and their tokenizers (every tokenizer loads through AutoTokenizer: the fast and slow names
    # are one class in transformers 5)
    "UMT5EncoderModel": ComponentClass("transformers", "model"),
    "T5EncoderModel": ComponentClass("transformers", "model"),
    "CLIPTextModel": ComponentClass("transformers", "model"),
    "T5Tokenizer": ComponentClass("transformers", "tokenizer"),
    "T5TokenizerFast": ComponentClass("transformers", "tokenizer"),
    "CLIPTokenizer": ComponentClass("transformers", "tokenizer"),
    "CLIPTokenizerFast": ComponentClass("transformers", "tokenizer"),
    "AutoTokenizer": ComponentClass("transformers", "tokenizer"),
    # schedulers
    "FlowMatchEulerDiscreteScheduler": ComponentClass("diffusers", "scheduler"),
    "UniPCMultistepScheduler": ComponentClass("diffusers", "scheduler"),
    "DDIMScheduler": ComponentClass("diffusers", "scheduler"),
    "DPMSolverMultistepScheduler": ComponentClass("diffusers", "scheduler"),
    "EulerDiscreteScheduler": ComponentClass("diffusers", "scheduler"),
    # dysen's own, in the same folder format (``dysen.backbones.dysen_wan``)
    "KLVideoAutoencoder": ComponentClass("dysen", "model"),
    "MiniLMTextEncoder": ComponentClass("dysen", "reference"),
}


@dataclass(frozen=True)
class FolderIndex:
    """A parsed ``model_index.json``: the pipeline class, its components' classes and its other settings."""

    folder: Path
    pipeline_class: str
    components: dict[str, str]  # component name -> class name (components given as [null, null] left out)
    settings: dict[str, Any]  # the non-component entries (e.g. Wan 2.2's boundary_ratio)

    def class_of(self, name: str, allowed: tuple[str, ...]) -> str:
        """The class of component ``name``, which must be one of ``allowed``."""
        found = self.components.get(name)
        if found is None:
            raise BackboneFolderError(
                f"{self.folder / INDEX_NAME} names no {name!r} component (a {self.pipeline_class} needs one of "
                f"{', '.join(allowed)}); found components: {', '.join(sorted(self.components)) or 'none'}"
            )
        if found not in allowed:
            raise BackboneFolderError(
                f"the {name!r} component of {self.folder} is a {found}; dysen loads a {self.pipeline_class}'s "
                f"{name} only as one of {', '.join(allowed)}"
            )
        return found


def read_index(folder: str | Path) -> FolderIndex:
    """The ``model_index.json`` of the local folder ``folder`` (a hub id or a missing path is refused)."""
    path = Path(folder).expanduser()
    if not path.is_dir():
        hint = (
            " It looks like a hub id: download it first (e.g. `hf download ID --local-dir DIR`) and pass DIR."
            if not path.exists() and str(folder).count("/") == 1
            else ""
        )
        raise BackboneFolderError(f"the backbone {folder} is not a local folder.{hint}")
    index = path / INDEX_NAME
    if not index.is_file():
        raise BackboneFolderError(
            f"{path} has no {INDEX_NAME}: a backbone is a diffusers-format pipeline folder (as written by "
            "DiffusionPipeline.save_pretrained, e.g. Wan-AI/Wan2.1-T2V-1.3B-Diffusers)"
        )
    try:
        data = json.loads(index.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BackboneFolderError(f"cannot read {index}: {err}") from None
    if not isinstance(data, dict) or not isinstance(data.get("_class_name"), str):
        raise BackboneFolderError(f'{index} has no "_class_name" naming its pipeline class')
    components, settings = {}, {}
    for key, value in data.items():
        if key.startswith("_"):
            continue
        if isinstance(value, list) and len(value) == 2 and all(v is None or isinstance(v, str) for v in value):
            if value[1] is not None:
                components[key] = value[1]
        else:
            settings[key] = value
    return FolderIndex(path, data["_class_name"], components, settings)


def load_component(index: FolderIndex, name: str, allowed: tuple[str, ...], dtype: torch.dtype | None = None) -> Any:
    """Component ``name`` of ``index`` (one of the classes ``allowed``), loaded from its subfolder; a model in
    ``dtype`` (None: its saved dtype). A scheduler comes back as its class (``from_config`` makes fresh ones)."""
    class_name = index.class_of(name, allowed)
    spec = COMPONENT_CLASSES.get(class_name)
    if spec is None:  # a caller allowed a class this table does not know: a bug, not bad input
        raise AssertionError(f"{class_name} is missing from COMPONENT_CLASSES")
    path = index.folder / name
    if not path.is_dir():
        raise BackboneFolderError(f"{index.folder} names a {name!r} component ({class_name}) but has no {name}/")
    if spec.kind == "model":
        _check_safetensors(path, class_name)
    if spec.library == "dysen":
        return _load_own(class_name, path)
    library = importlib.import_module(spec.library)
    cls = getattr(library, "AutoTokenizer" if spec.kind == "tokenizer" else class_name)
    if spec.kind == "scheduler":
        return cls
    kwargs: dict[str, Any] = {"local_files_only": True}
    if spec.kind == "model":
        kwargs["use_safetensors"] = True
        if dtype is not None:
            kwargs["torch_dtype" if spec.library == "diffusers" else "dtype"] = dtype
    try:
        return cls.from_pretrained(path, **kwargs)
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        raise BackboneFolderError(f"cannot load the {name!r} component ({class_name}) from {path}: {err}") from None


def read_config(index: FolderIndex, name: str, filename: str = "config.json") -> dict[str, Any]:
    """The saved config of component ``name`` (``scheduler_config.json`` for a scheduler), read as JSON."""
    path = index.folder / name / filename
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BackboneFolderError(f"cannot read the {name!r} component's config {path}: {err}") from None
    if not isinstance(data, dict):
        raise BackboneFolderError(f"{path} is not a JSON object")
    return data


def _load_own(class_name: str, path: Path) -> Any:
    """One of dysen's own components from ``path`` (float32, on the CPU)."""
    from dysen.errors import DysenError

    try:
        if class_name == "KLVideoAutoencoder":
            from dysen.models.vae import KLVideoAutoencoder

            return KLVideoAutoencoder.from_pretrained(path)
        from dysen.backbones.dysen_wan import MiniLMStates

        return MiniLMStates.load(path)
    except DysenError as err:
        raise BackboneFolderError(f"cannot load the {class_name} in {path}: {err}") from None


def _check_safetensors(path: Path, class_name: str) -> None:
    """Refuse a model folder without safetensors weights (pickled weights are never loaded)."""
    files = [f.name for f in path.iterdir() if f.is_file()]
    if any(f.endswith(".safetensors") or f.endswith(".safetensors.index.json") for f in files):
        return
    pickles = [f for f in files if f.endswith(PICKLE_SUFFIXES)]
    if pickles:
        raise BackboneFolderError(
            f"{path} ({class_name}) holds only pickled weights ({', '.join(sorted(pickles))}); dysen loads "
            "safetensors only: convert them (load in diffusers/transformers, then save_pretrained with "
            "safe_serialization=True)"
        )
    raise BackboneFolderError(f"{path} ({class_name}) holds no weights (*.safetensors)")
