"""Exponential moving average of the trainable weights (LVDM/LDM ``LitEma``): θ_ema ← d·θ_ema + (1 − d)·θ.

As ``LitEma``, the decay warms up: after n updates d = min(decay, (1 + n) / (10 + n)), so that a short run's
average is not dominated by the random initial weights (with a fixed d = 0.999, 61 % of the weight would still
sit on the initialisation after 500 steps).

The average is kept in float32 beside the model and saved with every checkpoint; the exported model
(``dysen train-vdm`` → pipeline folder) carries the averaged weights. Under sharding (``dysen.train.sharding``) each
process averages its own shards (the parameters' local tensors) and checkpoints them as ``DTensor``s (``shards``).
"""

from __future__ import annotations

import torch
from torch import nn

from dysen.train.sharding import is_dtensor, local

NUM_UPDATES = "_num_updates"  # the update count, stored beside the shadow weights


class EMA:
    """A float32 shadow of every trainable parameter of ``modules`` (name -> module), keyed ``module.param``; of a
    sharded parameter, a shadow of this process's shard."""

    def __init__(self, modules: dict[str, nn.Module], decay: float) -> None:
        self.decay, self.num_updates = decay, 0
        self.params = {
            f"{name}.{key}": param
            for name, module in modules.items()
            for key, param in module.named_parameters()
            if param.requires_grad
        }
        self.shadow = {key: local(param).detach().float().clone() for key, param in self.params.items()}

    @torch.no_grad()
    def update(self) -> None:
        """Move the shadow towards the current weights (call after each optimizer step)."""
        self.num_updates += 1
        decay = self.current_decay()
        params = [local(param).detach().float() for param in self.params.values()]
        torch._foreach_lerp_(list(self.shadow.values()), params, 1.0 - decay)  # one fused kernel, not one per tensor

    def current_decay(self) -> float:
        """d = min(decay, (1 + n) / (10 + n)) after n updates (``LitEma``'s warm-up)."""
        n = self.num_updates
        return min(self.decay, (1 + n) / (10 + n))

    @torch.no_grad()
    def copy_to_model(self) -> None:
        """Overwrite the live weights with the averaged ones (at export; training is over)."""
        for key, param in self.params.items():
            local(param).copy_(self.shadow[key].to(param.dtype))

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {**self.shadow, NUM_UPDATES: torch.tensor(self.num_updates, dtype=torch.int64)}

    def shards(self) -> dict[str, torch.Tensor]:
        """The shadow as its parameters are sharded: a ``DTensor`` over each sharded parameter's mesh whose local
        tensor is the shadow itself (what ``torch.distributed.checkpoint`` saves, and loads into in place)."""
        from torch.distributed.tensor import DTensor

        out = {}
        for key, param in self.params.items():
            shadow = self.shadow[key]
            if is_dtensor(param):
                shadow = DTensor.from_local(shadow, param.device_mesh, param.placements, run_check=False,
                                            shape=param.shape, stride=param.stride())  # fmt: skip
            out[key] = shadow
        return out

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        state = dict(state)
        self.num_updates = int(state.pop(NUM_UPDATES, torch.tensor(0)).item())
        missing = sorted(set(self.shadow) - set(state))
        if missing:
            raise KeyError(f"the EMA state lacks {missing[:5]}")
        self.shadow = {key: state[key].float().clone() for key in self.shadow}
