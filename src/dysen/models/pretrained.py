"""Save and load a network as a folder: ``config.json`` (its typed config) + ``model.safetensors``.

The diffusers layout, with dataclass configs instead of ``register_to_config``: a module that mixes in
``Pretrained`` declares ``config_class`` (a frozen dataclass) and is built from one config. Loading
reads only safetensors; a pickled checkpoint (``.bin``, ``.pt``, ``.ckpt``) is refused with a clear
error, because unpickling runs arbitrary code.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from dysen.atomic import staged_dir
from dysen.errors import DysenError

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")

_M = TypeVar("_M", bound="Pretrained")


class CheckpointError(DysenError):
    """A model folder is missing, incomplete, pickled, or does not match the model it is loaded into."""


def config_to_dict(config: Any) -> dict[str, Any]:
    """A (nested) dataclass config as plain JSON data."""
    return dataclasses.asdict(config)


def config_from_dict(config_class: type, data: dict[str, Any]) -> Any:
    """Rebuild a (nested) dataclass config; unknown keys are an error that names them."""
    fields = {f.name: f for f in dataclasses.fields(config_class)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise CheckpointError(f"{config_class.__name__} has no fields {unknown}; was this saved by another version?")
    import typing

    hints = typing.get_type_hints(config_class)
    kwargs = {}
    for name, value in data.items():
        kind = fields[name].type
        nested = _dataclass_type(config_class, name, kind)
        if nested is not None and isinstance(value, dict):
            value = config_from_dict(nested, value)
        elif not _fits(value, hints.get(name)):
            raise CheckpointError(
                f"{config_class.__name__}.{name} is {value!r} ({type(value).__name__}), expected {hints.get(name)}: "
                "the config.json is damaged or was edited by hand"
            )
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[name] = value
    try:
        return config_class(**kwargs)
    except (TypeError, ValueError, DysenError) as err:  # the dataclass's own checks
        raise CheckpointError(f"invalid {config_class.__name__} in config.json: {err}") from None


def _fits(value: Any, kind: Any) -> bool:
    """Whether JSON ``value`` can be a field of type ``kind`` (plain scalars, tuples, Literal, unions; other
    types are not checked)."""
    import types
    import typing

    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if kind is None or kind is Any:
        return True
    if kind is type(None):
        return value is None
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, arg) for arg in args)
    if origin is typing.Literal:
        return value in args
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind is str:
        return isinstance(value, str)
    if origin is tuple or kind is tuple:
        if not isinstance(value, list | tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_fits(v, args[0]) for v in value)
        return not args or (len(args) == len(value) and all(_fits(v, a) for v, a in zip(value, args, strict=True)))
    return True


def _dataclass_type(owner: type, name: str, annotation: Any) -> type | None:
    """The dataclass type of field ``name`` of ``owner``, if it is one (annotations may be strings)."""
    import typing

    hints = typing.get_type_hints(owner)
    kind = hints.get(name, annotation)
    return kind if dataclasses.is_dataclass(kind) else None


class Pretrained:
    """Mixin for ``torch.nn.Module``s built from one frozen dataclass ``config``."""

    config_class: ClassVar[type]
    config: Any

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write ``config.json`` and ``model.safetensors`` into ``directory`` atomically (all or nothing)."""
        with staged_dir(directory) as staging:
            (staging / CONFIG_NAME).write_text(
                json.dumps({"_class": type(self).__name__, **config_to_dict(self.config)}, indent=2) + "\n"
            )
            state = {k: v.detach().contiguous() for k, v in self.state_dict().items()}  # type: ignore[attr-defined]
            save_file(state, staging / WEIGHTS_NAME)
        return Path(directory)

    @classmethod
    def from_pretrained(cls: type[_M], directory: str | os.PathLike, map_location: str = "cpu") -> _M:
        """Build the module from ``directory``'s config and load its safetensors weights (strictly)."""
        folder = Path(directory)
        config = config_from_dict(cls.config_class, _read_config(folder, cls.__name__))
        model = cls(config)  # type: ignore[call-arg]
        state = _read_weights(folder, map_location)
        try:
            missing, unexpected = model.load_state_dict(state, strict=False)  # type: ignore[attr-defined]
        except RuntimeError as err:  # shape mismatches
            raise CheckpointError(f"{folder / WEIGHTS_NAME} does not match {cls.__name__}: {err}") from None
        if missing or unexpected:
            raise CheckpointError(
                f"{folder / WEIGHTS_NAME} does not match {cls.__name__}: missing {sorted(missing)[:5]}, "
                f"unexpected {sorted(unexpected)[:5]}"
            )
        return model


def _read_config(folder: Path, class_name: str) -> dict[str, Any]:
    path = folder / CONFIG_NAME
    if not path.is_file():
        raise CheckpointError(f"{folder} is not a model folder: {CONFIG_NAME} is missing")
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise CheckpointError(f"cannot read {path}: {err}") from None
    saved = data.pop("_class", class_name)
    if saved != class_name:
        raise CheckpointError(f"{folder} holds a {saved}, not a {class_name}")
    return data


def _read_weights(folder: Path, map_location: str) -> dict[str, torch.Tensor]:
    path = folder / WEIGHTS_NAME
    if not path.is_file():
        pickles = sorted(p.name for p in folder.iterdir() if p.suffix in _PICKLE_SUFFIXES) if folder.is_dir() else []
        if pickles:
            raise CheckpointError(
                f"{folder} has pickled weights ({', '.join(pickles)}) and no {WEIGHTS_NAME}: dysen loads only "
                "safetensors, since unpickling can run arbitrary code. Convert it once with "
                "torch.load(..., weights_only=True) and safetensors.torch.save_file."
            )
        raise CheckpointError(f"{folder} has no {WEIGHTS_NAME}")
    try:
        return load_file(path, device=map_location)
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{path} is not a readable safetensors file: {err}") from None


class PickledCheckpointError(CheckpointError):
    """A ``torch.save`` file that holds pickled Python objects besides tensors, refused by ``weights_only``."""


def read_state_dict(
    path: str | os.PathLike[str], what: str, *, trust: bool = False, warn: Any = None
) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` file or of a tensors-only ``torch.save`` file (``weights_only=True``; a
    ``{"state_dict": ...}`` wrapper is unwrapped). ``what`` names the weights in errors. A file with other pickled
    objects is refused (``PickledCheckpointError``) unless ``trust``: then it is unpickled, after ``warn(message)``
    (default: print), since unpickling can run code."""
    file = Path(path)
    if not file.is_file():
        raise CheckpointError(f"{what} weights not found at {file}: pass the path of a .pth or .safetensors file")
    try:
        if file.suffix == ".safetensors":
            return load_file(file)
        try:
            state = torch.load(file, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:
            if not trust:
                raise PickledCheckpointError(
                    f"{file} holds pickled Python objects, not only tensors, and is refused "
                    f"({str(err).splitlines()[0]}): re-save it as a tensors-only state dict, "
                    "torch.save(model.state_dict()) or safetensors"
                ) from None
            (warn or print)(f"warning: unpickling {file} with weights_only=False: it can run code")
            state = torch.load(file, map_location="cpu", weights_only=False)
    except (OSError, RuntimeError, EOFError, SafetensorError) as err:
        raise CheckpointError(f"cannot read the {what} weights {file}: {err}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{file} holds a {type(state).__name__}, not a state dict of tensors")
    return state
