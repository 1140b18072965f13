"""One training loop for every stage, over HF Accelerate: setup → model → data → loop → checkpoint.

A stage is a ``Task``: the modules it trains and ``step(batch, generator) -> loss``. The loop owns the rest:
AdamW with linear warm-up then a constant or cosine learning rate, gradient accumulation and clipping,
mixed precision, DDP, an EMA of the trainable weights, a guard against non-finite losses, progress,
metrics (``metrics.jsonl``, and TensorBoard when installed; with each step's wall time ``step_s`` and the part
of it spent waiting for the data loader ``data_s``) and atomic checkpoints (``checkpoint``).

Two optional task hooks (``Task``): ``sample`` makes videos of a fixed batch (the dataset's first clips) every
``sample_every`` steps into ``RUN/samples/step-<n>/`` (and TensorBoard), outside the training RNG streams;
``aux_modules`` adds a second module group with its own AdamW (a GAN discriminator, LVDM's autoencoder loss),
stepped on the task's ``aux_loss`` from the same backward and checkpointed with its optimizer.

Exact resume and process-count invariance: the learning rate, the data order and every random draw are
pure functions of (seed, step, micro-batch). Step s's global batch is split into ``grad_accum × processes``
micro-batches of ``batch_size`` clips; micro-batch m = a·processes + rank (a = accumulation index) gets the
same clips and the same generator/torch seed however it is scheduled. So a resumed run repeats the losses
of an uninterrupted one, and 2 processes × accum 1 repeat 1 process × accum 2 (up to float summation order).

Streams (an ``IterableDataset`` such as ``dysen.data.shards.ShardDataset``) have no ``StepSampler``: each
process reads its own split of the stream (the dataset splits by rank and worker) in batches of
``batch_size``, and at its end calls ``set_epoch(epoch + 1)`` (when the dataset has it) and reads it again.
Their order is not a function of the step, so resuming from a stream is not exact: the weights, optimizer
and step are restored, and the stream replays from the start of the epoch the checkpoint was in.

Bad items: a batch whose collate reports ``batch["skipped"]`` (``dysen.data.datasets.collate`` drops the
items that came back None) adds to the run's tally. ``TrainResult.skipped`` is the number of *distinct* bad
items of this call (by dataset index, over every process; for a stream, which has no index, every bad draw
counts); ``TrainResult.skipped_draws`` and the ``skipped`` metric count every bad draw, so a bad file drawn
in 3 epochs counts 3 there and 1 in ``skipped``. Neither is kept in checkpoints: a resumed run counts afresh.
A micro-batch whose every item failed is not run: it adds a zero gradient (it still passes through the
model, so DDP stays in step, logging zeros under the task's last log names; in DDP the first micro-batch
of a run must not be all bad on one process only). A step whose every micro-batch (on every process) was
empty makes no optimizer update, is not counted as non-finite, and logs a NaN loss and ``empty_steps``.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple, Protocol

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset, Sampler
from tqdm.auto import tqdm

from dysen.errors import DysenError
from dysen.train.checkpoint import (
    Checkpoint,
    TrainCheckpointError,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from dysen.train.ema import EMA

CONFIG_NAME = "train_config.json"
METRICS_NAME = "metrics.jsonl"
SAMPLES_DIR = "samples"
SAMPLE_FPS = 8  # frame rate of the sample videos written every ``sample_every`` steps
_RESUMABLE_CHANGES = {
    "steps", "save_every", "keep_checkpoints", "log_every", "num_workers", "max_nonfinite", "sample_every",
    "sample_count",
}  # fmt: skip


class TrainError(DysenError):
    """A training run cannot start or continue (bad settings, too little data, a run folder in the way)."""


class NonFiniteLossError(TrainError):
    """The loss was NaN/inf for ``max_nonfinite`` steps in a row; a checkpoint was written first."""


@dataclass(frozen=True)
class TrainConfig:
    """How to optimise; saved as ``train_config.json`` in the run folder."""

    steps: int = 1000  # optimizer steps in all; a resumed run continues up to this
    batch_size: int = 8  # clips per micro-batch per process; global batch = batch_size × processes × grad_accum
    grad_accum: int = 1  # micro-batches accumulated per optimizer step
    lr: float = 1e-4  # peak learning rate
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW (β1, β2); LVDM's AE used (0.5, 0.9)
    weight_decay: float = 0.0  # AdamW decoupled weight decay
    warmup_steps: int = 0  # linear warm-up from 0 to ``lr`` over this many steps
    schedule: Literal["constant", "cosine"] = "constant"  # after warm-up: constant, or cosine decay to min_lr_ratio·lr
    min_lr_ratio: float = 0.0  # final learning rate of the cosine schedule, as a fraction of ``lr``
    grad_clip: float = 1.0  # largest global gradient norm; 0 turns clipping off
    ema_decay: float = 0.999  # EMA decay of the trainable weights; 0 turns the EMA off
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"  # autocast dtype (Accelerate)
    seed: int = 0  # seeds the data order and every random draw (t, noise, dropout)
    save_every: int = 500  # checkpoint every this many steps, and always at the end
    keep_checkpoints: int = 2  # newest checkpoints kept on disk
    log_every: int = 1  # metrics written every this many steps
    max_nonfinite: int = 5  # stop (after a checkpoint) when this many losses in a row are NaN/inf
    num_workers: int = 0  # DataLoader worker processes per training process
    cpu: bool = False  # train on the CPU even when a GPU is present
    sample_every: int = 0  # write sample videos (``task.sample``) every this many steps; 0 turns sampling off
    sample_count: int = 2  # clips of the fixed sample batch (the dataset's first ones)

    def __post_init__(self) -> None:
        positive = ("steps", "batch_size", "grad_accum", "save_every", "log_every", "max_nonfinite", "sample_count")
        bad = [name for name in positive if getattr(self, name) < 1]
        if bad or self.lr <= 0 or self.warmup_steps < 0 or not 0 <= self.ema_decay < 1 or self.sample_every < 0:
            raise TrainError(
                f"invalid TrainConfig: {bad or 'lr/warmup_steps/ema_decay/sample_every'} out of range in {self}"
            )


class StepOutput(NamedTuple):
    """What ``Task.step`` returns: the scalar loss to minimise and scalars to log beside it."""

    loss: torch.Tensor  # []
    logs: dict[str, torch.Tensor]  # name -> [] (detached)
    aux_loss: torch.Tensor | None = None  # [] loss of ``aux_modules`` (own optimizer); None: they skip this step


class Task(Protocol):
    """One stage of training: what is trained, and the loss of one micro-batch.

    Optional hooks, used when present:

    * ``sample(batch) -> {name: uint8 video [T, H, W, 3]}``: the videos to look at every ``sample_every`` steps,
      made from a fixed batch of the dataset's first clips (main process only, under ``torch.no_grad``, with the
      modules in eval mode; it must draw from no shared generator).
    * ``aux_modules() -> {name: module}``: a second module group (a GAN discriminator) with its own AdamW (same
      settings and schedule), checkpointed beside the first; it steps on ``StepOutput.aux_loss`` when a step
      returns one. Its gradients must come from ``aux_loss`` only and the first group's from ``loss`` only
      (one backward of their sum), and every parameter of both must take part in each step (DDP).
    * ``begin_step(step)``: told the 0-based optimizer step before its micro-batches (e.g. a GAN's start step).
    """

    def modules(self) -> dict[str, nn.Module]:
        """The trained modules by name (checkpoint keys are ``<name>.<param>``)."""
        ...

    def to(self, device: torch.device) -> Task:
        """Move every module, frozen ones included, to ``device``."""
        ...

    def step(self, batch: Any, generator: torch.Generator) -> StepOutput | torch.Tensor:
        """The loss of ``batch``; every random draw comes from ``generator`` (on the task's device)."""
        ...


@dataclass(frozen=True)
class TrainResult:
    """How a run ended; on return the task's modules hold the EMA weights (when EMA is on)."""

    step: int  # optimizer steps done
    loss: float  # mean loss of the last step
    nonfinite: int  # steps skipped for a non-finite loss, in all
    skipped: int = 0  # distinct bad items dropped in this call (module docstring; a stream counts every draw)
    skipped_draws: int = 0  # bad items dropped in this call, counting each draw of the same item
    empty_steps: int = 0  # steps with no good item at all, so no optimizer update, in this call
    steps_run: int = 0  # optimizer steps run in this call (0: a resumed run had already done them all)
    interrupted: bool = False  # stopped early by SIGTERM/SIGINT, after checkpointing the step it was on


class _TaskModule(nn.Module):
    """The task as one module, so that DDP sees its forward (gradient sync) and its trained parameters."""

    def __init__(self, task: Task, trained: dict[str, nn.Module]) -> None:
        super().__init__()
        self.task = task
        self.trained = nn.ModuleDict(trained)
        self.log_keys: list[str] = []  # of the last real step: an empty micro-batch logs zeros under them

    def forward(self, batch: Any, generator: torch.Generator) -> StepOutput:
        if _is_empty(batch):  # every item failed: a zero loss that still touches every trained parameter
            zero = sum(p.sum() for p in self.trained.parameters()) * 0.0
            return StepOutput(zero, {k: zero.detach() for k in self.log_keys})  # type: ignore[arg-type]
        out = self.task.step(batch, generator)
        out = out if isinstance(out, StepOutput) else StepOutput(out, {})
        self.log_keys = list(out.logs)
        return out


def _is_empty(batch: Any) -> bool:
    """A collated batch whose every item was dropped (``skipped`` > 0 and no ``id`` left)."""
    return isinstance(batch, Mapping) and batch.get("skipped", 0) > 0 and not batch.get("id")


class IndexedDataset(Dataset):
    """``(index, item)`` of a map-style dataset, so that the indices of bad items travel with their batch."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[int, Any]:
        return index, self.dataset[index]


class _IndexedCollate:
    """``collate`` of the items, paired with the indices of the items that came back None."""

    def __init__(self, collate: Callable[[list[Any]], Any]) -> None:
        self.collate = collate

    def __call__(self, pairs: list[tuple[int, Any]]) -> tuple[Any, list[int]]:
        return self.collate([item for _, item in pairs]), [index for index, item in pairs if item is None]


def _ignore_stop_signals(worker_id: int) -> None:
    """In a data-loader worker: ignore SIGTERM and SIGINT. A scheduler's time limit or Ctrl-C signals the whole
    process group; the main process then finishes its step and checkpoints (``StopSignals``), which needs
    its workers alive. They still exit with the main process, as every loader worker does."""
    for number in StopSignals.SIGNALS:
        signal.signal(number, signal.SIG_IGN)


class _Stream:
    """Batches of an ``IterableDataset``, epoch after epoch (``set_epoch`` when it has one); no indices."""

    def __init__(self, dataset: IterableDataset, collate: Callable[[list[Any]], Any], config: TrainConfig) -> None:
        self.dataset, self.config, self.epoch = dataset, config, 0
        self.loader = DataLoader(
            dataset, config.batch_size, collate_fn=collate, num_workers=config.num_workers,
            worker_init_fn=_ignore_stop_signals,
        )  # fmt: skip

    def __iter__(self) -> Iterator[tuple[Any, list[int]]]:
        while True:
            if hasattr(self.dataset, "set_epoch"):
                self.dataset.set_epoch(self.epoch)
            empty = True
            for batch in self.loader:
                empty = False
                yield batch, []
            if empty:
                raise TrainError(f"the stream {self.dataset} gave this process no batch (fewer shards than ranks?)")
            self.epoch += 1


def train(
    task: Task,
    dataset: Dataset,
    collate: Callable[[list[Any]], Any],
    config: TrainConfig,
    run_dir: str | Path,
    resume: bool = False,
) -> TrainResult:
    """Train ``task`` on ``dataset`` into ``run_dir``; ``resume`` continues from its newest checkpoint."""
    from accelerate import Accelerator

    # -- setup: processes, run folder, resolved config
    cpu = config.cpu or not torch.cuda.is_available()  # processes on a CPU-only machine talk over gloo
    accelerator = Accelerator(
        mixed_precision=config.mixed_precision, gradient_accumulation_steps=config.grad_accum, cpu=cpu
    )
    run_dir = Path(run_dir)
    if accelerator.is_main_process:
        _write_or_check_config(run_dir, config, resume)
    # -- model: trained modules, optimizer, EMA, restored state
    modules = task.to(accelerator.device).modules()
    aux_modules: dict[str, nn.Module] = task.aux_modules() if hasattr(task, "aux_modules") else {}
    if aux_modules and config.mixed_precision == "fp16":
        raise TrainError("a second optimizer (the discriminator) needs --mixed-precision bf16 or no, not fp16")
    params, optimizer = _optimizer(modules, config)
    aux_params, aux_optimizer = _optimizer(aux_modules, config) if aux_modules else ([], None)
    ema = EMA(modules, config.ema_decay) if config.ema_decay > 0 else None
    everything = {**modules, **aux_modules}
    start, counters = _restore(run_dir, everything, (optimizer, aux_optimizer), ema) if resume else (0, {})
    counters = {"nonfinite_total": 0, "nonfinite_run": 0, **counters}
    model, optimizer = accelerator.prepare(_TaskModule(task, everything), optimizer)
    if aux_optimizer is not None:
        aux_optimizer = accelerator.prepare(aux_optimizer)
    # -- data: this process's micro-batches from step ``start`` on (a stream: from its epoch's start)
    stream = None
    if isinstance(dataset, IterableDataset):
        stream = _Stream(dataset, collate, config)
        stream.epoch = counters.pop("data_epoch", 0)
        batches: Iterator[tuple[Any, list[int]]] = iter(stream)
    else:
        size, rank = len(dataset), accelerator.process_index  # type: ignore[arg-type]
        sampler = StepSampler(size, config, accelerator.num_processes, rank, start)
        loader = DataLoader(
            IndexedDataset(dataset), config.batch_size, sampler=sampler, collate_fn=_IndexedCollate(collate),
            num_workers=config.num_workers, worker_init_fn=_ignore_stop_signals,
        )  # fmt: skip
        batches = iter(loader)
    tally = {"skipped": 0, "empty_steps": 0}
    bad: set[int] = set()
    metrics = MetricsLog(run_dir, start, enabled=accelerator.is_main_process)
    sampling = config.sample_every > 0 and accelerator.is_main_process and hasattr(task, "sample")
    sample_batch = _sample_batch(dataset, collate, config.sample_count) if sampling else None

    def checkpoint(step: int) -> None:
        if accelerator.is_main_process:
            weights = {f"{n}.{k}": v for n, m in everything.items() for k, v in m.state_dict().items()}
            saved = {**counters, "data_epoch": stream.epoch} if stream is not None else counters
            state = Checkpoint(step, weights, optimizer.state_dict(), ema.state_dict() if ema else None, saved)
            state.aux_optimizer = aux_optimizer.state_dict() if aux_optimizer is not None else None
            save_checkpoint(run_dir, state, config.keep_checkpoints)
        accelerator.wait_for_everyone()

    # -- loop: one optimizer step per iteration, until ``config.steps`` or a stop signal
    loss = math.nan
    main = accelerator.is_main_process
    progress = tqdm(range(start, config.steps), initial=start, total=config.steps, disable=not main, desc="training")
    done = start
    with StopSignals() as signals:
        for step in progress:
            lr = learning_rate(step, config)
            for group in [*optimizer.param_groups, *(aux_optimizer.param_groups if aux_optimizer else [])]:
                group["lr"] = lr
            if hasattr(task, "begin_step"):
                task.begin_step(step)
            started, timing = time.perf_counter(), {"data_s": 0.0}
            loss, logs, ran, aux_ran = _accumulate(model, batches, step, config, accelerator, tally, bad, timing)
            aux = (aux_params, aux_optimizer) if aux_ran and aux_optimizer is not None else None
            if ran:
                logs.update(_update(loss, params, optimizer, ema, counters, accelerator, config.grad_clip, aux))
            else:  # no good item in the whole step: no update, and not a non-finite loss
                optimizer.zero_grad(set_to_none=True)
                tally["empty_steps"] += 1
            if aux_optimizer is not None:
                aux_optimizer.zero_grad(set_to_none=True)
            timing["step_s"] = time.perf_counter() - started  # data_s of it waited for the loader
            progress.set_postfix(loss=f"{loss:.4f}", skipped=tally["skipped"])
            if (step + 1) % config.log_every == 0 or not math.isfinite(loss):
                metrics.write(step + 1, {"loss": loss, "lr": lr, **logs, **counters, **tally, **timing})
            if sampling and (step + 1) % config.sample_every == 0:
                _write_samples(task, modules, sample_batch, run_dir, step + 1, metrics)
            # -- checkpoint: every save_every steps, at the end, and before giving up on non-finite losses
            stop = counters["nonfinite_run"] >= config.max_nonfinite
            interrupted = signals.received(accelerator)
            done = step + 1
            if stop or interrupted or (step + 1) % config.save_every == 0 or step + 1 == config.steps:
                checkpoint(step + 1)
            if stop:
                metrics.close()
                raise NonFiniteLossError(
                    f"the loss was NaN/inf for {config.max_nonfinite} steps in a row (up to step {step + 1}); the "
                    f"last finite weights are checkpointed in {run_dir}. Lower --lr, check the data, then --resume "
                    "latest"
                )
            if interrupted:
                break
    progress.close()
    metrics.close()
    if ema is not None:
        ema.copy_to_model()
    if stream is not None:
        distinct = tally["skipped"]
    else:
        from accelerate.utils import gather_object

        distinct = len(set(gather_object(sorted(bad)))) if accelerator.num_processes > 1 else len(bad)
    result = TrainResult(
        done, loss, counters["nonfinite_total"], distinct, tally["skipped"], tally["empty_steps"], done - start,
        done < config.steps,
    )  # fmt: skip
    if main and tally["skipped"]:
        print(f"training skipped {distinct} bad items ({tally['skipped']} draws in all)")
    return result


class StopSignals:
    """SIGTERM and SIGINT ask the loop to stop after the step in progress, with a checkpoint (a cluster's
    time limit, Ctrl-C): the run then continues with ``--resume latest``. A second signal of the same kind acts
    as it would without this handler. Installed only from the main thread (signals can only be caught there)."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.caught: int | None = None
        self.previous: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for number in self.SIGNALS:
                self.previous[number] = signal.signal(number, self._catch)

    def _catch(self, number: int, frame: Any) -> None:
        self.caught = number
        signal.signal(number, self.previous[number])  # a second one is not deferred
        print(f"\n{signal.Signals(number).name}: stopping after this step with a checkpoint", flush=True)

    def received(self, accelerator: Any) -> bool:
        """Whether any process caught a signal (a collective call when there are several processes)."""
        if accelerator.num_processes == 1:
            return self.caught is not None
        if self.caught is not None:
            accelerator.set_trigger()
        return bool(accelerator.check_trigger())

    def __enter__(self) -> StopSignals:
        return self

    def __exit__(self, *exc: object) -> None:
        for number, handler in self.previous.items():
            signal.signal(number, handler)
        self.previous = {}


def _sample_batch(dataset: Dataset, collate: Callable[[list[Any]], Any], count: int) -> Any:
    """The collated first ``count`` clips of the dataset (of a stream: its first ones), drawn once per run."""
    with torch.random.fork_rng(devices=[]):
        if isinstance(dataset, IterableDataset):
            items = list(itertools.islice(iter(dataset), count))
        else:
            items = [dataset[i] for i in range(min(count, len(dataset)))]  # type: ignore[arg-type]
    if not items or all(item is None for item in items):
        raise TrainError(f"cannot sample: the first {count} clips of the dataset failed to load (see --sample-count)")
    return collate(items)


@torch.no_grad()
def _write_samples(
    task: Any, modules: dict[str, nn.Module], batch: Any, run_dir: Path, step: int, metrics: MetricsLog
) -> None:
    """``task.sample(batch)`` in eval mode, as ``RUN/samples/step-<n>/<name>.mp4`` and TensorBoard videos; the
    training mode and every RNG stream (CPU, CUDA) are left as they were, so a run with sampling repeats one
    without."""
    from dysen.data.video import write_video

    modes = {name: module.training for name, module in modules.items()}
    cuda = [torch.cuda.current_device()] if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    try:
        with torch.random.fork_rng(devices=cuda):
            for module in modules.values():
                module.eval()
            videos = task.sample(batch)
    finally:
        for name, module in modules.items():
            module.train(modes[name])
    folder = run_dir / SAMPLES_DIR / f"step-{step:08d}"
    folder.mkdir(parents=True, exist_ok=True)
    for name, frames in videos.items():
        write_video(folder / f"{name}.mp4", frames, fps=SAMPLE_FPS)
    metrics.videos(step, videos)


def _optimizer(modules: dict[str, nn.Module], config: TrainConfig) -> tuple[list[nn.Parameter], Any]:
    """The trainable parameters of ``modules`` and their AdamW."""
    params = [p for module in modules.values() for p in module.parameters() if p.requires_grad]
    return params, torch.optim.AdamW(params, lr=config.lr, betas=config.betas, weight_decay=config.weight_decay)


def _update(
    loss: float,
    params: list[nn.Parameter],
    optimizer: torch.optim.Optimizer,
    ema: EMA | None,
    counters: dict[str, int],
    accelerator: Any,
    grad_clip: float,
    aux: tuple[list[nn.Parameter], torch.optim.Optimizer] | None = None,
) -> dict[str, float]:
    """Clip and apply the accumulated gradients (and the second group's, ``aux``) and update the EMA; for a
    non-finite loss skip all and count."""
    logs = {}
    if math.isfinite(loss):
        logs["grad_norm"] = float(accelerator.clip_grad_norm_(params, grad_clip or math.inf))
        optimizer.step()
        if aux is not None:  # accelerate's clip above unscaled every optimizer's gradients; plain clip here
            logs["aux_grad_norm"] = float(torch.nn.utils.clip_grad_norm_(aux[0], grad_clip or math.inf))
            aux[1].step()
        if ema is not None:
            ema.update()
        counters["nonfinite_run"] = 0
    else:
        counters["nonfinite_total"] += 1
        counters["nonfinite_run"] += 1
    optimizer.zero_grad(set_to_none=True)
    return logs


def _accumulate(
    model: nn.Module,
    batches: Iterator[tuple[Any, list[int]]],
    step: int,
    config: TrainConfig,
    accelerator: Any,
    tally: dict[str, int],
    bad: set[int],
    timing: dict[str, float],
) -> tuple[float, dict[str, float], bool, bool]:
    """Forward/backward ``grad_accum`` micro-batches; the mean loss and logs over every process and micro-batch
    that had a good item, whether any had one (``tally``/``bad``: the dropped items, module docstring), and
    whether any returned an ``aux_loss`` (its gradients accumulate from the same backward). ``timing["data_s"]``
    adds the seconds spent waiting for batches."""
    totals: dict[str, float] = {}
    weight, skipped, aux_ran = 0.0, 0.0, False
    for a in range(config.grad_accum):
        micro = a * accelerator.num_processes + accelerator.process_index
        seed = step_seed(config.seed, step, micro)
        torch.manual_seed(seed)  # dropout and any other draw from the global generator
        generator = torch.Generator(accelerator.device).manual_seed(seed)
        waited = time.perf_counter()
        batch, failed = next(batches)
        timing["data_s"] += time.perf_counter() - waited
        bad.update(failed)
        ran = 0.0 if _is_empty(batch) else 1.0
        with accelerator.accumulate(model):
            loss, logs, aux_loss = model(batch, generator)
            accelerator.backward(loss if aux_loss is None else loss + aux_loss)
        aux_ran = aux_ran or aux_loss is not None
        dropped = float(batch.get("skipped", 0)) if isinstance(batch, Mapping) else 0.0
        # [3 + K]: weighted loss, weight, dropped items, weighted logs (an empty micro-batch has no logs)
        flags = torch.tensor([ran, dropped], device=loss.device)
        values = torch.cat(
            [(loss.detach().float() * ran)[None], flags, *(v.detach().float()[None] * ran for v in logs.values())]
        )
        reduced = accelerator.reduce(values, "sum").tolist()  # the same numbers in every process
        weight, skipped = weight + reduced[1], skipped + reduced[2]
        for name, value in zip(["loss", *logs], reduced[:1] + reduced[3:], strict=True):
            totals[name] = totals.get(name, 0.0) + value
    tally["skipped"] += round(skipped)
    if weight == 0:
        return math.nan, {}, False, False
    return totals.pop("loss") / weight, {name: value / weight for name, value in totals.items()}, True, aux_ran


def learning_rate(step: int, config: TrainConfig) -> float:
    """Linear warm-up over ``warmup_steps``, then constant or cosine decay to ``min_lr_ratio·lr`` at ``steps``."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    if config.schedule == "constant":
        return config.lr
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    floor = config.min_lr_ratio
    return config.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def step_seed(*key: int) -> int:
    """A 63-bit seed that is a pure function of ``key`` (seed, step, micro-batch)."""
    return int(np.random.SeedSequence(list(key)).generate_state(2, np.uint64)[0] >> np.uint64(1))


class StepSampler(Sampler[int]):
    """Indices of this process's micro-batches for steps ``start`` .. ``config.steps`` − 1, in order.

    Epoch e is the permutation seeded by (seed, e); step s takes global batch s mod (steps per epoch) of
    epoch s div (steps per epoch), and micro-batch m = a·processes + rank of it (a = accumulation index).
    """

    def __init__(self, size: int, config: TrainConfig, processes: int, rank: int, start: int) -> None:
        self.size, self.config, self.processes, self.rank, self.start = size, config, processes, rank, start
        self.global_batch = config.batch_size * config.grad_accum * processes
        if size < self.global_batch:
            raise TrainError(
                f"the dataset has {size} clips, fewer than one global batch of {self.global_batch} "
                f"(batch size × grad accum × processes): use more data or a smaller --batch-size"
            )

    def __len__(self) -> int:
        return (self.config.steps - self.start) * self.config.batch_size * self.config.grad_accum

    def __iter__(self) -> Iterator[int]:
        per_epoch, micro = self.size // self.global_batch, self.config.batch_size
        order, order_epoch = None, -1
        for step in range(self.start, self.config.steps):
            epoch, slot = divmod(step, per_epoch)
            if epoch != order_epoch:
                order_epoch = epoch
                shuffle = torch.Generator().manual_seed(step_seed(self.config.seed, epoch))
                order = torch.randperm(self.size, generator=shuffle)
            chunk = order[slot * self.global_batch : (slot + 1) * self.global_batch]  # type: ignore[index]
            for a in range(self.config.grad_accum):
                m = a * self.processes + self.rank
                yield from chunk[m * micro : (m + 1) * micro].tolist()


class MetricsLog:
    """Per-step scalars: ``metrics.jsonl`` in the run folder (always), and TensorBoard when it is installed.

    On resume from step ``start`` the lines of later steps (written before a crash) are dropped, so the
    file reads as one uninterrupted run.
    """

    def __init__(self, run_dir: Path, start: int, enabled: bool = True) -> None:
        self.enabled, self.writer, self.file = enabled, None, None
        if not enabled:
            return
        path = run_dir / METRICS_NAME
        kept = [line for line in _read_lines(path) if json.loads(line)["step"] <= start]
        path.write_text("".join(kept), encoding="utf-8")
        self.file = path.open("a", encoding="utf-8")
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(run_dir / "tensorboard"))
        except ImportError:  # tensorboard is optional: pip install tensorboard
            self.writer = None

    def write(self, step: int, values: dict[str, float]) -> None:
        if self.file is None:
            return
        self.file.write(json.dumps({"step": step, **values}) + "\n")
        self.file.flush()
        for name, value in values.items() if self.writer is not None else ():
            self.writer.add_scalar(f"train/{name}", value, step)

    def videos(self, step: int, videos: Mapping[str, torch.Tensor | np.ndarray]) -> None:
        """uint8 ``[T, H, W, 3]`` videos as TensorBoard ``samples/<name>`` (which needs moviepy to encode them)."""
        for name, frames in videos.items() if self.writer is not None else ():
            clip = torch.as_tensor(np.asarray(frames)).permute(0, 3, 1, 2)[None]  # [1, T, 3, H, W]
            self.writer.add_video(f"samples/{name}", clip, step, fps=SAMPLE_FPS)

    def close(self) -> None:
        for handle in (self.file, self.writer):
            if handle is not None:
                handle.close()


def _read_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines(keepends=True) if path.is_file() else []


def _write_or_check_config(run_dir: Path, config: TrainConfig, resume: bool) -> None:
    """Save the resolved config; when resuming, refuse settings that would change the run's course."""
    path = run_dir / CONFIG_NAME
    data = json.loads(json.dumps(dataclasses.asdict(config)))  # tuples as lists, as read back
    if resume and path.is_file():
        saved = json.loads(path.read_text(encoding="utf-8"))
        changed = sorted(k for k in data if k not in _RESUMABLE_CHANGES and saved.get(k) != data[k])
        if changed:
            raise TrainError(
                f"cannot resume {run_dir} with other settings for {changed} (saved: "
                f"{ {k: saved.get(k) for k in changed} }); use the saved ones or a new --out"
            )
    elif not resume and (run_dir / "checkpoints").is_dir():
        raise TrainError(f"{run_dir} already holds a training run: pass --resume latest, or choose a new --out")
    run_dir.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.tmp")
    staging.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    staging.replace(path)


def _restore(
    run_dir: Path,
    modules: dict[str, nn.Module],
    optimizers: tuple[torch.optim.Optimizer, torch.optim.Optimizer | None],
    ema: EMA | None,
) -> tuple[int, dict[str, int]]:
    """Load the newest checkpoint into the modules (both groups), the optimizers (the second one's when there is
    one) and the EMA; (step, counters). No checkpoint: start at 0."""
    folder = latest_checkpoint(run_dir)
    if folder is None:
        return 0, {}
    state = load_checkpoint(folder)
    for name, module in modules.items():
        prefix = f"{name}."
        own = {k[len(prefix) :]: v for k, v in state.weights.items() if k.startswith(prefix)}
        try:
            module.load_state_dict(own)
        except RuntimeError as err:
            raise TrainCheckpointError(f"{folder} does not fit the model being trained ({name}): {err}") from None
    optimizer, aux_optimizer = optimizers
    optimizer.load_state_dict(state.optimizer)
    if (aux_optimizer is None) != (state.aux_optimizer is None):
        raise TrainCheckpointError(
            f"{folder} {'lacks' if state.aux_optimizer is None else 'has'} a second optimizer (a discriminator's), "
            "unlike the run being resumed: resume with the same loss settings"
        )
    if aux_optimizer is not None:
        aux_optimizer.load_state_dict(state.aux_optimizer)
    if ema is not None and state.ema is not None:
        ema.load_state_dict(state.ema)
    return state.step, state.counters
