"""One training loop for every stage, over HF Accelerate: setup → model → data → loop → checkpoint.

A stage is a ``Task``: the modules it trains and ``step(batch, generator) -> loss``. The loop owns the rest:
AdamW with linear warm-up then a constant or cosine learning rate, gradient accumulation and clipping,
mixed precision, DDP or sharding (FSDP2, ``sharding``), an EMA of the trainable weights (``optimizers``), a guard
against non-finite losses, progress, metrics (``metrics``), atomic checkpoints (``checkpoint``; sharded:
``sharded_checkpoint``), bad items (``bad_items``) and a clean stop on SIGTERM/SIGINT (``signals``).

Two optional task hooks (``Task``): ``sample`` makes videos of a fixed batch (the dataset's first clips) every
``sample_every`` steps into ``RUN/samples/step-<n>/`` (and TensorBoard), outside the training RNG streams
(``samples``); ``aux_modules`` adds a second module group with its own AdamW (a GAN discriminator, LVDM's
autoencoder loss), stepped on the task's ``aux_loss`` from the same backward and checkpointed with its optimizer.

Exact resume and process-count invariance: the learning rate, the data order and every random draw are
pure functions of (seed, step, micro-batch). Step s's global batch is split into ``grad_accum × processes``
micro-batches of ``batch_size`` clips; micro-batch m = a·processes + rank (a = accumulation index) gets the
same clips and the same generator/torch seed however it is scheduled (``data_order``). So a resumed run repeats
the losses of an uninterrupted one, and 2 processes × accum 1 repeat 1 process × accum 2 (up to float summation
order). A stream (an ``IterableDataset``) is split between the processes and read epoch after epoch; its order is
not a function of the step, so resuming from a stream is not exact: the weights, optimizer and step are restored,
and the stream replays from the start of the epoch the checkpoint was in. Sharding keeps all of this: the same
micro-batches and seeds, gradients averaged over the processes as DDP averages them.

The run folder holds the resolved ``train_config.json``; a resume with other settings (but those in
``_RESUMABLE_CHANGES``) is refused (``dysen.run_folder``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple, Protocol

import torch
from torch import nn
from torch.utils.data import Dataset, IterableDataset
from tqdm.auto import tqdm

from dysen.run_folder import as_saved, resume_changes, write_settings
from dysen.train.bad_items import MAX_EMPTY_STEPS, BadItemTally, NoGoodItemsError, dropped_items, is_empty
from dysen.train.checkpoint import save_checkpoint
from dysen.train.data_order import Stream, step_batches, step_seed
from dysen.train.errors import NonFiniteLossError, TrainError
from dysen.train.metrics import MetricsLog
from dysen.train.optimizers import NonFiniteCount, Optimizers, learning_rate, restore_sharded, sharded_state
from dysen.train.samples import sample_batch, write_samples
from dysen.train.sharded_checkpoint import save_sharded
from dysen.train.sharding import (
    SHARDINGS,
    ShardedModel,
    accelerator_options,
    blocks,
    check_sharding,
    make_contiguous,
    scalar_owners,
    shard,
)
from dysen.train.signals import StopSignals

CONFIG_NAME = "train_config.json"
_RESUMABLE_CHANGES = {
    "steps", "save_every", "keep_checkpoints", "log_every", "num_workers", "max_nonfinite", "sample_every",
    "sample_count", "sharding",
}  # fmt: skip
"""Settings a resume may change. ``sharding`` between full_shard and hybrid_shard (the checkpoints are the same);
between ddp and those the checkpoint's format refuses it (``dysen.train.sharded_checkpoint``)."""


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
    keep_checkpoints: int = 2  # newest checkpoints kept on disk; 0 keeps every one (to choose one afterwards)
    log_every: int = 1  # metrics written every this many steps
    max_nonfinite: int = 5  # stop (after a checkpoint) when this many losses in a row are NaN/inf
    num_workers: int = 0  # DataLoader worker processes per training process
    cpu: bool = False  # train on the CPU even when a GPU is present
    sample_every: int = 0  # write sample videos (``task.sample``) every this many steps; 0 turns sampling off
    sample_count: int = 2  # clips of the fixed sample batch (the dataset's first ones)
    sharding: Literal["ddp", "full_shard", "hybrid_shard"] = "ddp"  # replicate the weights, or shard them (FSDP2)

    def __post_init__(self) -> None:
        positive = ("steps", "batch_size", "grad_accum", "save_every", "log_every", "max_nonfinite", "sample_count")
        bad = [name for name in positive if getattr(self, name) < 1]
        numbers = {"lr": self.lr, "weight_decay": self.weight_decay, "min_lr_ratio": self.min_lr_ratio,
                   "grad_clip": self.grad_clip, "ema_decay": self.ema_decay, "betas": sum(self.betas)}  # fmt: skip
        bad += [name for name, value in numbers.items() if not math.isfinite(value)]
        nonnegative = (self.warmup_steps, self.keep_checkpoints, self.sample_every)
        bad += ["sharding"] if self.sharding not in SHARDINGS else []
        if bad or self.lr <= 0 or min(nonnegative) < 0 or not 0 <= self.ema_decay < 1:
            raise TrainError(
                f"invalid TrainConfig: {bad or 'lr/warmup_steps/keep_checkpoints/ema_decay/sample_every'} out of "
                f"range in {self}"
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
class LoopResult:
    """How a run of the loop ended; on return the task's modules hold the EMA weights (when EMA is on). A sharded run's
    are gathered into the main process's modules, on the CPU; the other processes' stay sharded."""

    step: int  # optimizer steps done
    loss: float  # mean loss of the last step
    nonfinite: int  # steps skipped for a non-finite loss, in all
    skipped: int = 0  # distinct bad items dropped in this call (``dysen.train.bad_items``; a stream: every draw)
    skipped_draws: int = 0  # bad items dropped in this call, counting each draw of the same item
    empty_steps: int = 0  # steps with no good item at all, so no optimizer update, in this call
    steps_run: int = 0  # optimizer steps run in this call (0: a resumed run had already done them all)
    interrupted: bool = False  # stopped early by SIGTERM/SIGINT, after checkpointing the step it was on
    stop_signal: int = 0  # the signal that stopped it (SIGTERM 15, SIGINT 2); 0: none

    @property
    def exit_code(self) -> int:
        """What the command exits with: 0, or 128 + the stop signal (143 SIGTERM, 130 SIGINT), as a shell would."""
        return 128 + self.stop_signal if self.stop_signal else 0


class _TaskModule(nn.Module):
    """The task as one module, so that DDP (or FSDP) sees its forward (gradient sync) and its trained parameters."""

    def __init__(self, task: Task, trained: dict[str, nn.Module], sharded: bool = False) -> None:
        super().__init__()
        self.task = task
        self.trained = nn.ModuleDict(trained)
        self.log_keys: list[str] = []  # of the last real step: an empty micro-batch logs zeros under them
        self.sharded = sharded
        self.last_batch: Any = None  # sharded: the last micro-batch with a good item

    def forward(self, batch: Any, generator: torch.Generator) -> StepOutput:
        if is_empty(batch) and self.sharded:  # every process must run every sharded module: the last batch, at 0
            return self._replay(generator)
        if is_empty(batch):  # every item failed: a zero loss that still touches every trained parameter
            zero = sum(p.sum() for p in self.trained.parameters()) * 0.0
            return StepOutput(zero, {k: zero.detach() for k in self.log_keys})  # type: ignore[arg-type]
        out = self.task.step(batch, generator)
        out = out if isinstance(out, StepOutput) else StepOutput(out, {})
        self.log_keys = list(out.logs)
        self.last_batch = batch if self.sharded else None
        return out

    def _replay(self, generator: torch.Generator) -> StepOutput:
        """The last good micro-batch's step at weight 0: no gradient, but the same all-gathers as the others'."""
        if self.last_batch is None:
            raise TrainError(
                "under --sharding every process runs every step, but this one's first micro-batch had no clip that "
                "loads; fix or drop the bad clips (the log names them), or train with --sharding ddp"
            )
        out = self.task.step(self.last_batch, generator)
        out = out if isinstance(out, StepOutput) else StepOutput(out, {})
        return StepOutput(out.loss * 0.0, {k: v * 0.0 for k, v in out.logs.items()})


@dataclass(frozen=True)
class _Run:
    """One ``train`` call, set up: what every step and checkpoint works with."""

    task: Task
    config: TrainConfig
    run_dir: Path
    accelerator: Any
    model: nn.Module  # the task as one module (``_TaskModule``), prepared by Accelerate
    modules: dict[str, nn.Module]  # the trained modules
    everything: dict[str, nn.Module]  # and the second group's (checkpointed together)
    optimizers: Optimizers
    stream: Stream | None  # a stream's epoch is checkpointed; None for a map-style dataset
    steps_per_epoch: int | None  # of a map-style dataset (``StepSampler``); None for a stream
    sharded: ShardedModel | None = None  # a sharded run's task module and how to undo its sharding; None: DDP

    def checkpoint(self, step: int, nonfinite: NonFiniteCount) -> None:
        counters = nonfinite.counters()
        counters = {**counters, "data_epoch": self.stream.epoch} if self.stream is not None else counters
        if self.sharded is not None:  # every process writes its shards
            tensors = sharded_state(self.optimizers, self.model, self.modules)
            save_sharded(self.run_dir, step, tensors, counters, self.config.keep_checkpoints, self.accelerator)
            return
        if self.accelerator.is_main_process:
            state = self.optimizers.checkpoint(step, self.everything, counters)
            save_checkpoint(self.run_dir, state, self.config.keep_checkpoints)
        self.accelerator.wait_for_everyone()


@dataclass(frozen=True)
class _StepLoss:
    """What the micro-batches of one step gave, over every process."""

    loss: float  # mean over the micro-batches with a good item; NaN when there was none
    logs: dict[str, float]  # the task's logs, averaged as the loss
    ran: bool  # some micro-batch (of some process) had a good item
    aux_ran: bool  # some micro-batch returned an ``aux_loss`` (its gradients accumulated from the same backward)
    dropped: int  # bad items dropped, over every process
    failed: tuple[int, ...]  # this process's bad dataset indices
    data_s: float  # seconds this process waited for its batches


def train(
    task: Task,
    dataset: Dataset,
    collate: Callable[[list[Any]], Any],
    config: TrainConfig,
    run_dir: str | Path,
    resume: bool = False,
) -> LoopResult:
    """Train ``task`` on ``dataset`` into ``run_dir``; ``resume`` continues from its newest checkpoint."""
    from accelerate import Accelerator

    # -- setup: processes (sharded on GPUs: Accelerate's FSDP2 plugin), run folder, resolved config
    cpu = config.cpu or not torch.cuda.is_available()  # processes on a CPU-only machine talk over gloo
    trained = task.modules() if config.sharding != "ddp" else {}
    accelerator = Accelerator(
        mixed_precision=config.mixed_precision, gradient_accumulation_steps=config.grad_accum, cpu=cpu,
        **accelerator_options(config.sharding, cpu, blocks(trained), scalar_owners(trained)),
    )  # fmt: skip
    aux_modules: dict[str, nn.Module] = task.aux_modules() if hasattr(task, "aux_modules") else {}
    if aux_modules and config.mixed_precision == "fp16":
        raise TrainError("a second optimizer (the discriminator) needs --mixed-precision bf16 or no, not fp16")
    check_sharding(config.sharding, accelerator, config.mixed_precision, aux_modules)
    run_dir = Path(run_dir)
    if accelerator.is_main_process:
        _save_or_check_config(run_dir, config, resume)
    # -- model: trained modules, optimizers, EMA, restored state
    modules = task.to(accelerator.device).modules()
    everything = {**modules, **aux_modules}
    sharded = None
    if config.sharding == "ddp":
        optimizers = Optimizers.build(modules, aux_modules, config)
        start, counters = optimizers.restore(run_dir, everything) if resume else (0, {})
        model, optimizers = optimizers.prepare(accelerator, _TaskModule(task, everything))
    else:
        model, optimizers, sharded = _shard(task, modules, config, accelerator)
        start, counters = restore_sharded(optimizers, run_dir, model, modules) if resume else (0, {})
    # -- data: this process's micro-batches from step ``start`` on (a stream: from its epoch's start)
    stream = None
    if isinstance(dataset, IterableDataset):
        stream = Stream(dataset, collate, config)
        stream.epoch = counters.get("data_epoch", 0)
        batches: Iterator[tuple[Any, list[int]]] = iter(stream)
    else:
        batches = step_batches(dataset, collate, config, accelerator, start)
    run = _Run(
        task=task, config=config, run_dir=run_dir, accelerator=accelerator, model=model, modules=modules,
        everything=everything, optimizers=optimizers, stream=stream,
        steps_per_epoch=None if stream is not None else max(1, len(dataset) // _global_batch(config, accelerator)),
        sharded=sharded,
    )
    samplers = accelerator.is_main_process or sharded is not None  # sharded modules run in every process
    sampling = config.sample_every > 0 and samplers and hasattr(task, "sample")
    samples = sample_batch(dataset, collate, config.sample_count) if sampling else None
    return _loop(run, batches, start, NonFiniteCount(counters), samples)


def end_process_group() -> None:
    """Free what holds the process group (a finished run's DDP model and optimizers), then destroy the group, so
    gloo's threads are joined while Python is alive; ``python -m dysen.cli`` calls it when a command succeeds.

    Left to the interpreter's exit, a gloo thread that drops its last all-reduce (and so its tensors' Python objects)
    needs the GIL during finalization and aborts the process (SIGABRT, "terminate called without an active
    exception": pytorch/pytorch#190489, #179291); torchrun then kills the other ranks, rank 0 perhaps while it writes
    ``model/``. Not after an error, when another process may still be in a collective; not inside ``train``, whose
    caller may train again in the same group (tests/sharded_runs.py).
    """
    import gc

    gc.collect()  # the finished run's modules, DDP reducer and optimizers, with their references to the group
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def _shard(
    task: Task, modules: dict[str, nn.Module], config: TrainConfig, accelerator: Any
) -> tuple[nn.Module, Optimizers, ShardedModel]:
    """The task module sharded (``dysen.train.sharding``: by Accelerate's FSDP2 plugin on GPUs, by the loop over
    gloo), AdamW over the shards, the parameters to clip and the EMA taken from the sharded modules."""
    from accelerate.utils import DistributedType

    make_contiguous(modules)
    model: nn.Module = _TaskModule(task, modules, sharded=True)
    sharded = ShardedModel.before(model)
    if accelerator.distributed_type == DistributedType.FSDP:  # shards in prepare, swapping AdamW's parameters
        model, optimizers = Optimizers.build(modules, {}, config, ema=False).prepare(accelerator, model)
    else:
        shard(model, modules, config.sharding, accelerator.device)
        optimizers = Optimizers.build(modules, {}, config, ema=False)
        optimizers = dataclasses.replace(optimizers, optimizer=accelerator.prepare(optimizers.optimizer))
        if config.mixed_precision != "no":  # what Accelerate's prepare would do for the model
            model.forward = accelerator.autocast()(model.forward)  # type: ignore[method-assign]
    return model, optimizers.over(modules, config.ema_decay), sharded.sharded()


def _loop(
    run: _Run, batches: Iterator[tuple[Any, list[int]]], start: int, nonfinite: NonFiniteCount, samples: Any
) -> LoopResult:
    """One optimizer step per iteration from ``start``, until ``config.steps`` or a stop signal; ``samples``: the
    batch to sample every ``sample_every`` steps (None: no sampling)."""
    config, accelerator, optimizers = run.config, run.accelerator, run.optimizers
    bad_items = BadItemTally()
    metrics = MetricsLog(run.run_dir, start, enabled=accelerator.is_main_process)
    loss, main, done = math.nan, accelerator.is_main_process, start
    progress = tqdm(range(start, config.steps), initial=start, total=config.steps, disable=not main, desc="training")
    with StopSignals() as signals:
        for step in progress:
            lr = learning_rate(step, config)
            optimizers.set_lr(lr)
            if hasattr(run.task, "begin_step"):
                run.task.begin_step(step)
            started = time.perf_counter()
            losses = _accumulate(run.model, batches, step, config, accelerator)
            bad_items.add(losses.dropped, losses.failed)
            bad_items.step(losses.ran)
            loss, logs = losses.loss, dict(losses.logs)
            if not losses.ran:  # no good item in the whole step: no update, and not a non-finite loss
                if bad_items.nothing_loads(step, run.steps_per_epoch):
                    metrics.close()
                    progress.close()
                    raise _nothing_loads(run, bad_items, step)
            elif math.isfinite(loss):
                logs.update(optimizers.step(accelerator, config.grad_clip, losses.aux_ran))
                nonfinite.record(finite=True)
            else:  # skip the update and count
                nonfinite.record(finite=False)
            optimizers.zero_grad()
            timing = {"data_s": losses.data_s, "step_s": time.perf_counter() - started}  # data_s of step_s
            progress.set_postfix(loss=f"{loss:.4f}", skipped=bad_items.draws)
            if (step + 1) % config.log_every == 0 or not math.isfinite(loss):
                values = {"loss": loss, "lr": lr, **logs, **nonfinite.counters(), **bad_items.metrics(), **timing}
                metrics.write(step + 1, {**values, "processes": accelerator.num_processes})  # + the world size
            if samples is not None and (step + 1) % config.sample_every == 0:
                with run.sharded.gathered() if run.sharded is not None else contextlib.nullcontext():
                    write_samples(run.task, run.modules, samples, run.run_dir, step + 1, metrics, write=main)
            # -- checkpoint: every save_every steps, at the end, and before giving up on non-finite losses
            stop = nonfinite.in_a_row >= config.max_nonfinite
            interrupted = signals.received(accelerator)
            done = step + 1
            if stop or interrupted or (step + 1) % config.save_every == 0 or step + 1 == config.steps:
                run.checkpoint(step + 1, nonfinite)
            if stop:
                metrics.close()
                raise NonFiniteLossError(
                    f"the loss was NaN/inf for {config.max_nonfinite} steps in a row (up to step {step + 1}); the "
                    f"last finite weights are checkpointed in {run.run_dir}. Lower --lr, check the data, then "
                    "--resume latest"
                )
            if interrupted:
                break
    progress.close()
    metrics.close()
    if optimizers.ema is not None:
        optimizers.ema.copy_to_model()
    distinct = bad_items.distinct(accelerator, stream=run.stream is not None)
    if run.sharded is not None:
        run.sharded.consolidate(run.modules, main)
    if main and bad_items.draws:
        print(f"training skipped {distinct} bad items ({bad_items.draws} draws in all)")
    return LoopResult(
        step=done, loss=loss, nonfinite=nonfinite.total, skipped=distinct, skipped_draws=bad_items.draws,
        empty_steps=bad_items.empty_steps, steps_run=done - start, interrupted=done < config.steps,
        stop_signal=signals.caught or (signal.SIGTERM if done < config.steps else 0),
    )  # fmt: skip


def _global_batch(config: TrainConfig, accelerator: Any) -> int:
    return config.batch_size * config.grad_accum * accelerator.num_processes


def _nothing_loads(run: _Run, bad_items: BadItemTally, step: int) -> NoGoodItemsError:
    """The error of a run whose every item fails to load (the weights are unchanged: no checkpoint)."""
    span = "a whole epoch" if bad_items.empty_in_a_row < MAX_EMPTY_STEPS else f"{bad_items.empty_in_a_row} steps"
    distinct = bad_items.distinct(run.accelerator, stream=run.stream is not None)
    return NoGoodItemsError(
        f"no item loaded in {span} (up to step {step + 1}): {bad_items.draws} bad items skipped ({distinct} "
        "distinct), none good. Check the data: each video must decode (e.g. ffprobe FILE) and each caption be "
        "UTF-8 text; then train again"
    )


def _accumulate(
    model: nn.Module, batches: Iterator[tuple[Any, list[int]]], step: int, config: TrainConfig, accelerator: Any
) -> _StepLoss:
    """Forward/backward ``grad_accum`` micro-batches; the mean loss and logs over every process and micro-batch
    that had a good item (``dysen.train.bad_items``)."""
    totals: dict[str, float] = {}
    weight, skipped, aux_ran, data_s, failed = 0.0, 0.0, False, 0.0, []
    for a in range(config.grad_accum):
        micro = a * accelerator.num_processes + accelerator.process_index
        seed = step_seed(config.seed, step, micro)
        torch.manual_seed(seed)  # dropout and any other draw from the global generator
        generator = torch.Generator(accelerator.device).manual_seed(seed)
        waited = time.perf_counter()
        batch, bad = next(batches)
        data_s += time.perf_counter() - waited
        failed += bad
        ran = 0.0 if is_empty(batch) else 1.0
        with accelerator.accumulate(model):
            loss, logs, aux_loss = model(batch, generator)
            accelerator.backward(loss if aux_loss is None else loss + aux_loss)
        aux_ran = aux_ran or aux_loss is not None
        # [3 + K]: weighted loss, weight, dropped items, weighted logs (an empty micro-batch has no logs)
        flags = torch.tensor([ran, float(dropped_items(batch))], device=loss.device)
        values = torch.cat(
            [(loss.detach().float() * ran)[None], flags, *(v.detach().float()[None] * ran for v in logs.values())]
        )
        reduced = accelerator.reduce(values, "sum").tolist()  # the same numbers in every process
        weight, skipped = weight + reduced[1], skipped + reduced[2]
        for name, value in zip(["loss", *logs], reduced[:1] + reduced[3:], strict=True):
            totals[name] = totals.get(name, 0.0) + value
    if weight == 0:
        return _StepLoss(math.nan, {}, False, False, round(skipped), tuple(failed), data_s)
    loss = totals.pop("loss") / weight
    logs = {name: value / weight for name, value in totals.items()}
    return _StepLoss(loss, logs, True, aux_ran, round(skipped), tuple(failed), data_s)


def _save_or_check_config(run_dir: Path, config: TrainConfig, resume: bool) -> None:
    """Save the resolved config; when resuming, refuse settings that would change the run's course."""
    path = run_dir / CONFIG_NAME
    settings = as_saved(dataclasses.asdict(config))
    changed, saved = resume_changes(path, settings, resume, _RESUMABLE_CHANGES)
    if changed:
        raise TrainError(
            f"cannot resume {run_dir} with other settings for {changed} (saved: "
            f"{ {k: saved.get(k) for k in changed} }); use the saved ones or a new --out"
        )
    if not resume:
        refuse_existing_run(run_dir)
    write_settings(path, settings)


def refuse_existing_run(run_dir: Path) -> None:
    """A fresh run may not start in a folder that holds one (its checkpoints)."""
    if (run_dir / "checkpoints").is_dir():
        raise TrainError(f"{run_dir} already holds a training run: pass --resume latest, or choose a new --out")
