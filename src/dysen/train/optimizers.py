"""The optimizers of a training run: AdamW over the trained modules, a second AdamW for a second module group
(a GAN discriminator), the learning-rate schedule, clipping, the EMA, the non-finite-loss count, and the
checkpointed state of all of them (``dysen.train.checkpoint``; a sharded run's: ``dysen.train.sharded_checkpoint``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from dysen.train.checkpoint import Checkpoint, TrainCheckpointError, latest_checkpoint, newest_readable
from dysen.train.ema import EMA
from dysen.train.sharded_checkpoint import load_sharded
from dysen.train.sharding import is_dtensor, local

if TYPE_CHECKING:
    from dysen.train.loop import TrainConfig


def learning_rate(step: int, config: TrainConfig) -> float:
    """Linear warm-up over ``warmup_steps``, then constant or cosine decay to ``min_lr_ratio·lr`` at ``steps``."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    if config.schedule == "constant":
        return config.lr
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    floor = config.min_lr_ratio
    return config.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


class NonFiniteCount:
    """Steps skipped for a NaN/inf loss: in all, and in a row; both are kept in checkpoints."""

    def __init__(self, counters: Mapping[str, int]) -> None:
        self.total = counters.get("nonfinite_total", 0)
        self.in_a_row = counters.get("nonfinite_run", 0)

    def record(self, finite: bool) -> None:
        self.total += 0 if finite else 1
        self.in_a_row = 0 if finite else self.in_a_row + 1

    def counters(self) -> dict[str, int]:
        """As logged and checkpointed."""
        return {"nonfinite_total": self.total, "nonfinite_run": self.in_a_row}


@dataclass(frozen=True)
class Optimizers:
    """The trained parameters and their AdamW, the second group's (when the task has one), and the EMA."""

    params: list[nn.Parameter]
    optimizer: Any  # torch.optim.AdamW, wrapped by Accelerate once prepared
    aux_params: list[nn.Parameter]
    aux_optimizer: Any | None
    ema: EMA | None
    replicated: tuple[nn.Parameter, ...] = ()  # a sharded run's unsharded parameters: ``step`` averages their grads

    @classmethod
    def build(
        cls, modules: dict[str, nn.Module], aux_modules: dict[str, nn.Module], config: TrainConfig, ema: bool = True
    ) -> Optimizers:
        """The optimizers of ``modules`` (and ``aux_modules``); ``ema``: with the EMA (when ``ema_decay`` > 0)."""
        params, optimizer = _adamw(modules, config)
        aux_params, aux_optimizer = _adamw(aux_modules, config) if aux_modules else ([], None)
        average = EMA(modules, config.ema_decay) if ema and config.ema_decay > 0 else None
        return cls(params, optimizer, aux_params, aux_optimizer, average)

    def over(self, modules: dict[str, nn.Module], ema_decay: float) -> Optimizers:
        """The parameters to clip and the EMA taken anew from ``modules``, whose parameters sharding replaced; those it
        left whole (``sharding.scalar_owners``) are ``replicated``."""
        params = [p for module in modules.values() for p in module.parameters() if p.requires_grad]
        ema = EMA(modules, ema_decay) if ema_decay > 0 else None
        whole = tuple(p for p in params if not is_dtensor(p))
        return dataclasses.replace(self, params=params, ema=ema, replicated=whole)

    def prepare(self, accelerator: Any, model: nn.Module) -> tuple[nn.Module, Optimizers]:
        """``model`` and the optimizers prepared by Accelerate (DDP, mixed precision, accumulation)."""
        model, optimizer = accelerator.prepare(model, self.optimizer)
        aux = accelerator.prepare(self.aux_optimizer) if self.aux_optimizer is not None else None
        return model, dataclasses.replace(self, optimizer=optimizer, aux_optimizer=aux)

    def set_lr(self, lr: float) -> None:
        for group in [*self.optimizer.param_groups, *(self.aux_optimizer.param_groups if self.aux_optimizer else [])]:
            group["lr"] = lr

    def step(self, accelerator: Any, grad_clip: float, aux_ran: bool) -> dict[str, float]:
        """Clip and apply the accumulated gradients (and the second group's, when its loss ran), update the EMA;
        the gradient norms to log."""
        _average_gradients(self.replicated)
        logs = {"grad_norm": float(accelerator.clip_grad_norm_(self.params, grad_clip or math.inf))}
        self.optimizer.step()
        if aux_ran and self.aux_optimizer is not None:  # accelerate's clip above unscaled every optimizer's
            logs["aux_grad_norm"] = float(torch.nn.utils.clip_grad_norm_(self.aux_params, grad_clip or math.inf))
            self.aux_optimizer.step()
        if self.ema is not None:
            self.ema.update()
        return logs

    def zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        if self.aux_optimizer is not None:
            self.aux_optimizer.zero_grad(set_to_none=True)

    def checkpoint(self, step: int, modules: dict[str, nn.Module], counters: dict[str, int]) -> Checkpoint:
        """The state of step ``step``: the weights of ``modules`` (both groups), the optimizers and the EMA."""
        weights = {f"{n}.{k}": v for n, m in modules.items() for k, v in m.state_dict().items()}
        ema = self.ema.state_dict() if self.ema is not None else None
        state = Checkpoint(step, weights, self.optimizer.state_dict(), ema, counters)
        state.aux_optimizer = self.aux_optimizer.state_dict() if self.aux_optimizer is not None else None
        return state

    def restore(self, run_dir: Path, modules: dict[str, nn.Module]) -> tuple[int, dict[str, int]]:
        """Load the newest checkpoint into ``modules`` (both groups), the optimizers and the EMA; (step, counters).
        No checkpoint: start at 0."""
        found = newest_readable(run_dir)
        if found is None:
            return 0, {}
        folder, state = found
        for name, module in modules.items():
            prefix = f"{name}."
            own = {k[len(prefix) :]: v for k, v in state.weights.items() if k.startswith(prefix)}
            try:
                module.load_state_dict(own)
            except RuntimeError as err:
                raise TrainCheckpointError(f"{folder} does not fit the model being trained ({name}): {err}") from None
        self.optimizer.load_state_dict(state.optimizer)
        if (self.aux_optimizer is None) != (state.aux_optimizer is None):
            raise TrainCheckpointError(
                f"{folder} {'lacks' if state.aux_optimizer is None else 'has'} a second optimizer (a discriminator's),"
                " unlike the run being resumed: resume with the same loss settings"
            )
        if self.aux_optimizer is not None:
            self.aux_optimizer.load_state_dict(state.aux_optimizer)
        if self.ema is not None and state.ema is not None:
            self.ema.load_state_dict(state.ema)
        return state.step, state.counters


def _average_gradients(params: tuple[nn.Parameter, ...]) -> None:
    """Average the gradients of the parameters FSDP left whole over the processes, as DDP would (missing: 0)."""
    for param in params:
        if param.grad is None:
            param.grad = torch.zeros_like(param)
        torch.distributed.all_reduce(param.grad)  # sum: gloo has no average
        param.grad /= torch.distributed.get_world_size()


def sharded_state(optimizers: Optimizers, root: nn.Module, modules: dict[str, nn.Module]) -> dict[str, Any]:
    """What a sharded checkpoint holds (``dysen.train.sharded_checkpoint``), as this process's shards: the weights of
    ``modules``, AdamW's state (keyed by the parameters' names in ``root``, the task module) and the EMA."""
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    optimizer = get_optimizer_state_dict(root, _torch_optimizer(optimizers.optimizer))
    return _shards(optimizers, modules, optimizer["state"])


def restore_sharded(
    optimizers: Optimizers, run_dir: Path, root: nn.Module, modules: dict[str, nn.Module]
) -> tuple[int, dict[str, int]]:
    """Load the newest checkpoint of a sharded run into this process's shards; (step, counters). Every process calls
    it; no checkpoint: start at 0."""
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict, set_optimizer_state_dict

    folder = latest_checkpoint(run_dir)
    if folder is None:
        return 0, {}
    optimizer = _torch_optimizer(optimizers.optimizer)
    state = get_optimizer_state_dict(root, optimizer)  # initialised by a step with lr 0, to be overwritten
    tensors = _shards(optimizers, modules, state["state"])
    saved = load_sharded(folder, tensors)
    for name, module in modules.items():
        prefix = f"{name}."
        module.load_state_dict({k[len(prefix) :]: v for k, v in tensors["weights"].items() if k.startswith(prefix)})
    set_optimizer_state_dict(root, optimizer, state)
    if optimizers.ema is not None:
        optimizers.ema.num_updates = int(tensors["ema_updates"])
        for key, shadow in tensors["ema"].items():
            optimizers.ema.shadow[key].copy_(local(shadow))
    step = saved.pop("step")
    return step, {k: v for k, v in saved.items() if k != "format"}


def _shards(optimizers: Optimizers, modules: dict[str, nn.Module], optimizer: dict[str, Any]) -> dict[str, Any]:
    tensors = {
        "weights": {f"{n}.{k}": v for n, m in modules.items() for k, v in m.state_dict().items()},
        "optimizer": optimizer,
    }
    if optimizers.ema is not None:
        tensors["ema"] = optimizers.ema.shards()
        tensors["ema_updates"] = torch.tensor(optimizers.ema.num_updates)
    return tensors


def _torch_optimizer(optimizer: Any) -> torch.optim.Optimizer:
    """The torch optimizer inside Accelerate's wrapper."""
    return getattr(optimizer, "optimizer", optimizer)


def _adamw(modules: dict[str, nn.Module], config: TrainConfig) -> tuple[list[nn.Parameter], torch.optim.AdamW]:
    """The trainable parameters of ``modules`` and their AdamW."""
    params = [p for module in modules.values() for p in module.parameters() if p.requires_grad]
    return params, torch.optim.AdamW(params, lr=config.lr, betas=config.betas, weight_decay=config.weight_decay)
