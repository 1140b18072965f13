"""Where a backbone's modules live: one device, or sequential CPU offload through accelerate's hooks.

Sequential offload (``accelerate.cpu_offload``) keeps every weight in CPU memory and moves each submodule to the
GPU only while it runs: slow, but a 1.3B Wan fits a small GPU. On a machine without a GPU there is nothing to
offload to, so the option is refused rather than silently ignored.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from dysen.backbones.base import BackboneError, BackboneOptions


def resolve_device(options: BackboneOptions) -> torch.device:
    """The device the denoising runs on; checks that ``options`` can run there (before any weight is loaded)."""
    has_gpu = torch.cuda.is_available()
    device = torch.device(options.device if options.device is not None else ("cuda" if has_gpu else "cpu"))
    if options.offload:
        if not has_gpu:
            raise BackboneError(
                "--offload (sequential CPU offload) needs a CUDA GPU to run the layers on, and none is available; "
                "on the CPU the weights already live in CPU memory: drop --offload"
            )
        if device.type != "cuda":
            raise BackboneError(f"--offload runs the layers on a CUDA device, not on {device}; drop --device")
    if device.type == "cuda" and not has_gpu:
        raise BackboneError(f"device {device} was asked for but torch sees no CUDA GPU; use --device cpu")
    if device.type == "cpu" and options.dtype == "float16":
        raise BackboneError("float16 is for GPUs (many CPU kernels lack it); on the CPU use bfloat16 or float32")
    return device


def place(modules: Sequence[torch.nn.Module], device: torch.device, offload: bool) -> None:
    """Put ``modules`` on ``device``, or (``offload``) leave their weights on the CPU behind accelerate's hooks
    that run each submodule on ``device``."""
    for module in modules:
        module.eval().requires_grad_(False)
        if offload:
            from accelerate import cpu_offload

            # as diffusers' enable_sequential_cpu_offload: buffers travel only with a module's own parameters
            cpu_offload(module, execution_device=device, offload_buffers=len(module._parameters) > 0)
        else:
            module.to(device)
