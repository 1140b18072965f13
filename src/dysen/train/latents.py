"""Pre-cached VAE latents for ``dysen train-vdm --cache-latents DIR``: encode every clip once, then train from disk.

The frozen autoencoder's posterior q(z | x) = N(mean, exp(logvar)) of each clip is stored (its moments, not one
draw), so training still draws z ~ q(z | x) with the step's generator, exactly as encoding on the fly does
(``VDMTask`` samples ``DiagonalGaussian(mean, logvar)`` with the same generator call): a run from the cache
repeats a run from the videos up to float rounding.

Files of DIR (no pickles; every file written atomically, temp file + rename):

* ``shard-00000.safetensors`` … — clips ``[k·S, (k+1)·S)`` of the dataset: tensors ``mean`` and ``logvar``
  [n, c, t, h, w] (float32, unnormalised latent space) and ``index`` [n] (dataset indices); metadata
  ``records``, a JSON list of {id, caption, dsg} per clip (the DSG as its JSON dict, or null);
* ``source.json`` — what is being cached (the autoencoder's SHA-256 over config and weights, the dataset's
  length, the shard size, and the dataset's ``source`` where it has one: Dynamic Shapes' split, seed and
  settings), written first; a cache of another autoencoder or dataset is refused;
* ``index.json`` — written last: shards, clip counts and the indices of clips that failed to load.

Encoding is resumable: a restarted run keeps the shards already on disk (each complete, by the atomic
rename) and encodes only the missing ones. The cache is complete when ``index.json`` exists.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from dysen.atomic import publish, write_text_atomic
from dysen.dsg.types import DynamicSceneGraph
from dysen.errors import DysenError
from dysen.models.vae import FrameVAE, KLVideoAutoencoder
from dysen.run_folder import changed_settings, write_settings
from dysen.train.bad_items import IndexedDataset

FORMAT_VERSION = 2
"""2: gold DSGs carry angles and a last-frame keyframe (a version-1 cache would train without them)."""
INDEX = "index.json"
SOURCE = "source.json"


class LatentCacheError(DysenError):
    """A latent cache is incomplete, unreadable, or belongs to another autoencoder or dataset."""


def vae_fingerprint(vae: KLVideoAutoencoder | FrameVAE) -> str:
    """SHA-256 over the autoencoder's config (latent scale included) and weights."""
    config = dataclasses.asdict(vae.config) if dataclasses.is_dataclass(vae.config) else dict(vae.config)
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    for key, value in sorted(vae.state_dict().items()):
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


@torch.no_grad()
def cache_latents(
    vae: KLVideoAutoencoder | FrameVAE,
    dataset: Dataset,
    collate: Callable[[list[Any]], Any],
    folder: str | os.PathLike[str],
    shard_size: int = 256,
    batch_size: int = 8,
    progress: bool = True,
    workers: int = 0,
) -> Path:
    """Encode ``dataset`` (map-style) into ``folder`` with ``vae`` (module docstring); returns the folder.
    ``workers`` DataLoader processes load (render, decode) the clips while the autoencoder encodes."""
    root = Path(folder)
    size = len(dataset)  # type: ignore[arg-type]
    source = {"format": FORMAT_VERSION, "vae": vae_fingerprint(vae), "clips": size, "shard_size": shard_size}
    if hasattr(dataset, "source"):  # what the clips are, where the dataset can say it cheaply (Dynamic Shapes)
        source["data"] = dataset.source
    if (root / INDEX).is_file():
        _check_source(root, source)
        return root
    root.mkdir(parents=True, exist_ok=True)
    if (root / SOURCE).is_file():
        _check_source(root, source)
    else:
        write_settings(root / SOURCE, source)
    shards = [(root / f"shard-{k:05d}.safetensors", range(k * shard_size, min((k + 1) * shard_size, size)))
              for k in range(math.ceil(size / shard_size))]  # fmt: skip
    missing = [(path, indices) for path, indices in shards if not path.is_file()]
    bar = tqdm(total=size, initial=size - sum(len(i) for _, i in missing), desc="caching latents", unit="clip",
               disable=not progress)  # fmt: skip
    for path, indices, batches in _shard_batches(dataset, collate, missing, batch_size, workers):
        _write_shard(vae.eval(), batches, indices, path)
        bar.update(len(indices))
    bar.close()
    stored = {path: _shard_indices(path) for path, _ in shards}  # the clips each shard holds
    entries = [{"file": path.name, "count": len(stored[path])} for path, _ in shards]
    skipped = sorted(i for path, indices in shards for i in set(indices) - set(stored[path]))
    index = {**source, "shards": entries, "count": sum(e["count"] for e in entries), "skipped": skipped}
    write_text_atomic(root / INDEX, json.dumps(index, indent=2) + "\n")
    return root


class _GoodItems:
    """Collate the items that loaded, in a worker: (their indices, their videos [b, 3, T, H, W] or None, their
    records). Only tensors and plain dicts go back to the main process: pickled DSG objects are slow."""

    def __init__(self, collate: Callable[[list[Any]], Any]) -> None:
        self.collate = collate

    def __call__(self, pairs: list[tuple[int, Any]]) -> tuple[list[int], torch.Tensor | None, list[dict[str, Any]]]:
        good = [(index, item) for index, item in pairs if item is not None]
        if not good:
            return [], None, []
        items = [item for _, item in good]
        records = [
            {"id": it.get("id"), "caption": it.get("caption", ""), "dsg": _dsg_data(it.get("dsg"))} for it in items
        ]
        return [index for index, _ in good], self.collate(items)["video"], records


def _shard_batches(
    dataset: Dataset,
    collate: Callable[[list[Any]], Any],
    shards: Sequence[tuple[Path, range]],
    batch_size: int,
    workers: int,
) -> Iterator[tuple[Path, range, list[tuple[list[int], torch.Tensor | None, list[dict[str, Any]]]]]]:
    """Each missing shard with its collated batches, in order, loaded by one DataLoader over all of them."""
    chunks = [(k, list(indices[i : i + batch_size])) for k, (_, indices) in enumerate(shards)
              for i in range(0, len(indices), batch_size)]  # fmt: skip
    loader = DataLoader(IndexedDataset(dataset), batch_sampler=[chunk for _, chunk in chunks],
                        collate_fn=_GoodItems(collate), num_workers=workers)  # fmt: skip
    batches: list[tuple[list[int], torch.Tensor | None, list[dict[str, Any]]]] = []
    for (k, _), batch in zip(chunks, loader, strict=True):
        batches.append(batch)
        if len(batches) == math.ceil(len(shards[k][1]) / batch_size):
            yield shards[k][0], shards[k][1], batches
            batches = []


def _write_shard(
    vae: KLVideoAutoencoder | FrameVAE,
    batches: list[tuple[list[int], torch.Tensor | None, list[dict[str, Any]]]],
    indices: range,
    path: Path,
) -> None:
    """Encode the clips of ``batches`` (those that loaded) and write them as one shard, atomically."""
    device = next(vae.parameters()).device
    means, logvars, kept, records = [], [], [], []
    for good, video, batch_records in batches:
        if not good:
            continue
        posterior = vae.posterior(video.to(device))  # [b, c, t, h, w] each
        means.append(posterior.mean.float().cpu())
        logvars.append(posterior.logvar.float().cpu())
        kept += good
        records += batch_records
    if not kept:
        raise LatentCacheError(f"no clip of {indices[0]}..{indices[-1]} could be loaded: check the dataset")
    # contiguous: a frame-wise autoencoder's moments are strided views of its per-frame batch
    tensors = {
        "mean": torch.cat(means).contiguous(),
        "logvar": torch.cat(logvars).contiguous(),
        "index": torch.tensor(kept),
    }
    staging = path.with_name(f".{path.name}.tmp")
    save_file(tensors, staging, metadata={"records": json.dumps(records)})
    publish(staging)
    staging.replace(path)


def _dsg_data(dsg: DynamicSceneGraph | None) -> Any:
    return None if dsg is None else dsg.to_dict()


def _check_source(root: Path, expected: dict[str, Any]) -> None:
    try:
        saved = json.loads((root / SOURCE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise LatentCacheError(f"cannot read {root / SOURCE}: {err}; delete {root} to cache again") from None
    if saved != expected:
        changed = changed_settings(saved, expected)
        raise LatentCacheError(
            f"{root} caches other latents (different {changed}): use another --cache-latents folder, or delete it"
        )


def _shard_indices(path: Path) -> list[int]:
    try:
        with safe_open(path, "pt") as handle:
            return handle.get_tensor("index").tolist()
    except (OSError, SafetensorError) as err:
        raise LatentCacheError(f"cannot read {path}: {err}; delete it to encode it again") from None


class LatentDataset(Dataset):
    """The clips of a complete cache: dict(latent_mean, latent_logvar [c, t, h, w], caption, dsg, id)."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.root = Path(folder)
        try:
            index = json.loads((self.root / INDEX).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise LatentCacheError(f"{self.root} is not a complete latent cache ({INDEX}: {err})") from None
        means, logvars, self.records = [], [], []
        for shard in index["shards"]:
            path = self.root / shard["file"]
            try:
                with safe_open(path, "pt") as handle:
                    means.append(handle.get_tensor("mean"))
                    logvars.append(handle.get_tensor("logvar"))
                    self.records += json.loads(handle.metadata()["records"])
            except (OSError, SafetensorError, KeyError, json.JSONDecodeError) as err:
                raise LatentCacheError(f"cannot read {path}: {err}; delete {self.root} to cache again") from None
        self.mean, self.logvar = torch.cat(means), torch.cat(logvars)  # [N, c, t, h, w]

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        record = self.records[index]
        return {
            "latent_mean": self.mean[index],  # [c, t, h, w]
            "latent_logvar": self.logvar[index],  # [c, t, h, w]
            "caption": record["caption"],
            "dsg": self.gold_dsg(index),
            "id": record["id"],
        }

    def gold_dsg(self, index: int) -> DynamicSceneGraph | None:
        """Clip ``index``'s gold DSG, or None (``dysen.data.oversample``)."""
        dsg = self.records[index]["dsg"]
        return None if dsg is None else DynamicSceneGraph.from_dict(dsg)


def collate_latents(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Batch cached clips: moments stacked to [B, c, t, h, w]; captions, DSGs and ids as lists."""
    return {
        "latent_mean": torch.stack([item["latent_mean"] for item in items]),
        "latent_logvar": torch.stack([item["latent_logvar"] for item in items]),
        "caption": [item["caption"] for item in items],
        "dsg": [item["dsg"] for item in items],
        "id": [item["id"] for item in items],
    }
