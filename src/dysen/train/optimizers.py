"""The optimizers of a training run: AdamW over the trained modules, a second AdamW for a second module group
(a GAN discriminator), the learning-rate schedule, clipping, the EMA, the non-finite-loss count, and the
checkpointed state of all of them (``dysen.train.checkpoint``)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from dysen.train.checkpoint import Checkpoint, TrainCheckpointError, newest_readable
from dysen.train.ema import EMA

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

    @classmethod
    def build(
        cls, modules: dict[str, nn.Module], aux_modules: dict[str, nn.Module], config: TrainConfig
    ) -> Optimizers:
        params, optimizer = _adamw(modules, config)
        aux_params, aux_optimizer = _adamw(aux_modules, config) if aux_modules else ([], None)
        ema = EMA(modules, config.ema_decay) if config.ema_decay > 0 else None
        return cls(params, optimizer, aux_params, aux_optimizer, ema)

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


def _adamw(modules: dict[str, nn.Module], config: TrainConfig) -> tuple[list[nn.Parameter], torch.optim.AdamW]:
    """The trainable parameters of ``modules`` and their AdamW."""
    params = [p for module in modules.values() for p in module.parameters() if p.requires_grad]
    return params, torch.optim.AdamW(params, lr=config.lr, betas=config.betas, weight_decay=config.weight_decay)
