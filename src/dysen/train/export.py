"""A training checkpoint as a model folder: ``dysen model export RUN --step N --out DIR``.

A run ends by writing ``RUN/model`` from its final EMA weights. To use another checkpoint -- one chosen on
validation captions, or one of a run still going -- its weights replace the same tensors in a copy of a model folder
of that run (the *template*: ``RUN/model`` by default), module by module: the checkpoint's ``unet.*`` go into
``unet/model.safetensors``, ``transformer.*`` into ``transformer/diffusion_pytorch_model.safetensors``, a lone
module into a single-file folder's ``model.safetensors`` (an autoencoder run's). Every checkpoint tensor must be
in the template file under its name, with its shape, or nothing is written. The template's other tensors (buffers,
frozen parts) and its other files (configs, the frozen autoencoder, planner settings, the RL policy) are copied as
they are -- an autoencoder run's latent scale too, which was fitted to its final weights. A sharded run's checkpoint
(``--sharding``) is read whole from its shards.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from dysen.atomic import staged_dir
from dysen.errors import DysenError
from dysen.train.checkpoint import SHARDS_DIR, checkpoint_dir, latest_checkpoint, step_folder
from dysen.train.sharded_checkpoint import sharded_tensors

MODEL_DIR = "model"
WEIGHT_FILES = ("model.safetensors", "diffusion_pytorch_model.safetensors")
"""A module's weights in a model folder: dysen's ``Pretrained`` files, then diffusers' own."""


class ExportError(DysenError):
    """A checkpoint that cannot be exported: no such step, no EMA, or weights that do not fit the template."""


@dataclass(frozen=True)
class Export:
    """What ``export_checkpoint`` wrote."""

    folder: Path
    checkpoint: Path
    weights: str  # "ema" or "raw"
    modules: dict[str, int]  # module -> tensors replaced


def export_checkpoint(
    run: str | Path,
    out: str | Path,
    step: int | None = None,
    *,
    weights: str = "ema",
    template: str | Path | None = None,
) -> Export:
    """Write checkpoint ``step`` of ``run`` (None: the newest) as a model folder at ``out``; ``weights``: "ema" (what
    the run's own ``model/`` holds) or "raw" (the optimizer's); ``template``: the folder to copy (``run/model``)."""
    run, out = Path(run), Path(out)
    if weights not in ("ema", "raw"):
        raise ExportError(f"weights must be 'ema' or 'raw', got {weights!r}")
    folder = _checkpoint(run, step)
    template = Path(template) if template is not None else run / MODEL_DIR
    if not template.is_dir():
        raise ExportError(
            f"{template} is not a model folder: a run writes RUN/model when it ends (or is stopped by a signal); "
            "give --template DIR, a model folder of the same configuration (e.g. the --init of a fine-tune)"
        )
    if out.exists():  # the template too, which exists
        raise ExportError(f"{out} exists: export into a new folder")
    tensors = _checkpoint_tensors(folder, weights)
    modules = _split_modules(tensors)
    targets = {name: _weights_file(template, name, len(modules)) for name in modules}
    replaced = {name: _replace(targets[name], state) for name, state in modules.items()}  # checked, not yet written
    with staged_dir(out) as staging:
        shutil.copytree(template, staging, dirs_exist_ok=True)
        for name, (merged, metadata) in replaced.items():
            save_file(merged, str(staging / targets[name].relative_to(template)), metadata=metadata)
    return Export(out, folder, weights, {name: len(state) for name, state in modules.items()})


def _checkpoint(run: Path, step: int | None) -> Path:
    """The checkpoint folder of ``step`` (None: the newest)."""
    if not checkpoint_dir(run).is_dir():
        raise ExportError(f"{run} has no checkpoints/: is it a training run's folder (--out of a train command)?")
    folder = latest_checkpoint(run) if step is None else step_folder(run, step)
    if folder is None or not folder.is_dir():
        kept = sorted(p.name for p in checkpoint_dir(run).glob("step-*") if p.is_dir())
        raise ExportError(f"{run} has no checkpoint of step {step}; it keeps {', '.join(kept) or 'none'}")
    return folder


def _checkpoint_tensors(folder: Path, weights: str) -> dict[str, torch.Tensor]:
    if (folder / SHARDS_DIR).is_dir():  # a sharded run's: its shards, read whole
        tensors = sharded_tensors(folder, weights if weights == "ema" else "weights")
        if not tensors:
            raise ExportError(f"{folder} has no {weights} weights (the run kept no EMA: --weights raw)")
        return tensors
    path = folder / ("ema.safetensors" if weights == "ema" else "weights.safetensors")
    if not path.is_file():
        hint = " (the run kept no EMA: --weights raw)" if weights == "ema" else ""
        raise ExportError(f"{folder} has no {path.name}{hint}")
    try:
        tensors = load_file(path)
    except (OSError, SafetensorError) as err:
        raise ExportError(f"cannot read {path}: {err}") from None
    return {key: value for key, value in tensors.items() if not key.startswith("_")}  # "_num_updates": EMA's count


def _split_modules(tensors: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """``{"unet.conv.weight": …}`` -> ``{"unet": {"conv.weight": …}}``."""
    modules: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        module, _, name = key.partition(".")
        modules.setdefault(module, {})[name] = value
    if not modules:
        raise ExportError("the checkpoint holds no weights")
    return modules


def _weights_file(template: Path, module: str, count: int) -> Path:
    """Where ``module``'s weights live in ``template``."""
    for name in WEIGHT_FILES:
        if (template / module / name).is_file():
            return template / module / name
    if count == 1 and (template / WEIGHT_FILES[0]).is_file():  # a one-module folder, e.g. an autoencoder's
        return template / WEIGHT_FILES[0]
    raise ExportError(
        f"{template} has no weights for the checkpoint's {module!r} (looked for {module}/{WEIGHT_FILES[0]})"
    )


def _replace(
    path: Path, state: dict[str, torch.Tensor]
) -> tuple[dict[str, torch.Tensor], dict[str, str] | None]:
    """The tensors of ``path`` with those of ``state`` in their place (in the file's dtypes) and the file's metadata;
    refuses a state with tensors the file lacks or shapes it does not have."""
    try:
        with safe_open(str(path), "pt") as file:
            metadata = file.metadata()
        base = load_file(path)
    except (OSError, SafetensorError) as err:
        raise ExportError(f"cannot read {path}: {err}") from None
    missing = sorted(key for key in state if key not in base)
    shapes = sorted(f"{key} {tuple(state[key].shape)} vs {tuple(base[key].shape)}"
                    for key in state if key in base and state[key].shape != base[key].shape)  # fmt: skip
    if missing or shapes:
        problems = ([f"not in the template: {_names(missing)}"] if missing else []) + (
            [f"other shapes: {_names(shapes)}"] if shapes else []
        )
        raise ExportError(f"the checkpoint does not fit {path} ({'; '.join(problems)}): is it the same configuration?")
    merged = dict(base)
    for key, value in state.items():
        merged[key] = value.to(base[key].dtype).contiguous()
    return merged, metadata


def _names(items: list[str], limit: int = 5) -> str:
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more
