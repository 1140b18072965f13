"""Exponential moving average of the trainable weights (LVDM/LDM ``LitEma``): θ_ema ← d·θ_ema + (1 − d)·θ.

The average is kept in float32 beside the model and saved with every checkpoint; the exported model
(``dysen train-vdm`` → pipeline folder) carries the averaged weights.
"""

from __future__ import annotations

import torch
from torch import nn


class EMA:
    """A float32 shadow of every trainable parameter of ``modules`` (name -> module), keyed ``module.param``."""

    def __init__(self, modules: dict[str, nn.Module], decay: float) -> None:
        self.decay = decay
        self.params = {
            f"{name}.{key}": param
            for name, module in modules.items()
            for key, param in module.named_parameters()
            if param.requires_grad
        }
        self.shadow = {key: param.detach().float().clone() for key, param in self.params.items()}

    @torch.no_grad()
    def update(self) -> None:
        """Move the shadow towards the current weights (call after each optimizer step)."""
        for key, param in self.params.items():
            self.shadow[key].lerp_(param.detach().float(), 1.0 - self.decay)

    @torch.no_grad()
    def copy_to_model(self) -> None:
        """Overwrite the live weights with the averaged ones (at export; training is over)."""
        for key, param in self.params.items():
            param.copy_(self.shadow[key].to(param.dtype))

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.shadow)

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing = sorted(set(self.shadow) - set(state))
        if missing:
            raise KeyError(f"the EMA state lacks {missing[:5]}")
        self.shadow = {key: state[key].float().clone() for key in self.shadow}
