"""Sharded data parallelism (FSDP2, ``torch.distributed.fsdp.fully_shard``) for the one loop (issue 26).

``TrainConfig.sharding`` picks how the processes share the trained weights: ``ddp`` (each holds them all; the
default), ``full_shard`` (FSDP: each parameter, its gradient and its AdamW state split across every process) or
``hybrid_shard`` (HSDP: split across the processes of a node, replicated across nodes). Each block of a trained
module (every module of its outermost ``nn.ModuleList``s: a transformer's or a UNet's layers) is one FSDP unit,
all-gathered just before its forward and freed after it; the task module is the unit above them (the rest of the
weights: embeddings, norms, heads).

Two ways in, one state after. On GPUs Accelerate's FSDP plugin (``fsdp_version=2``) shards the task in
``accelerator.prepare`` (``accelerator_options``); on CPU processes (gloo), where Accelerate runs no FSDP, the loop
calls ``fully_shard`` itself (``shard``). Either way each trained parameter then is a ``DTensor`` whose local
tensor is this process's shard: the EMA keeps a shadow of the local shards (``dysen.train.ema``), checkpoints are
written shard by shard (``dysen.train.sharded_checkpoint``), and at the end ``ShardedModel.consolidate`` gathers the
full weights into the main process's modules, made plain modules again, for the export an unsharded run writes.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from dysen.train.errors import TrainError

SHARDINGS = ("ddp", "full_shard", "hybrid_shard")
_HOOK_DICTS = (
    "_forward_pre_hooks", "_forward_hooks", "_backward_pre_hooks", "_backward_hooks", "_state_dict_pre_hooks",
    "_state_dict_hooks", "_load_state_dict_pre_hooks", "_load_state_dict_post_hooks",
)  # fmt: skip
_HOOK_FLAGS = ("_forward_pre_hooks_with_kwargs", "_forward_hooks_with_kwargs", "_forward_hooks_always_called")


def local(tensor: torch.Tensor) -> torch.Tensor:
    """This process's shard of a sharded parameter (a view of its storage); any other tensor as it is."""
    return tensor.to_local() if is_dtensor(tensor) else tensor


def is_dtensor(tensor: torch.Tensor) -> bool:
    """Whether ``tensor`` is a ``DTensor`` (none exists until ``torch.distributed.tensor`` is imported, which an
    unsharded run never pays for)."""
    module = sys.modules.get("torch.distributed.tensor")
    return module is not None and isinstance(tensor, module.DTensor)


def blocks(modules: dict[str, nn.Module]) -> list[nn.Module]:
    """The FSDP units below the trained modules: the members of each outermost ``nn.ModuleList`` that hold
    parameters (not those of lists nested inside a member: a block's attention output list is part of the block)."""
    found: list[nn.Module] = []

    def visit(module: nn.Module) -> None:
        for child in module.children():
            if isinstance(child, nn.ModuleList):
                found.extend(m for m in child if any(True for _ in m.parameters()))
            else:
                visit(child)

    for module in modules.values():
        visit(module)
    return found


def scalar_owners(modules: dict[str, nn.Module]) -> list[nn.Module]:
    """The modules that hold 0-d parameters (an adapter's gate γ), which FSDP cannot shard: they stay replicated in
    every process and the loop averages their gradients itself (``Optimizers.step``)."""
    return [m for module in modules.values() for m in module.modules()
            if any(p.dim() == 0 for p in m.parameters(recurse=False))]  # fmt: skip


def check_sharding(sharding: str, accelerator: Any, mixed_precision: str, aux_modules: dict[str, nn.Module]) -> None:
    """Refuse what the loop cannot run: a sharded run outside a distributed launch, with fp16 or a second module
    group; and a process launched with an Accelerate FSDP or DeepSpeed config, which the loop does not read."""
    from accelerate.utils import DistributedType

    kind = accelerator.distributed_type
    if kind == DistributedType.DEEPSPEED:
        raise TrainError(
            "this process was launched with an Accelerate DeepSpeed config, which the training loop does not "
            "support (its EMA and checkpoints need torch-owned parameters): launch without it and pass --sharding "
            "full_shard or hybrid_shard (FSDP2) to shard the weights"
        )
    if sharding == "ddp":
        if kind == DistributedType.FSDP:
            raise TrainError(
                "this process was launched with an Accelerate FSDP config (--use_fsdp), which the training loop "
                "does not read: launch without it and pass --sharding full_shard or hybrid_shard instead"
            )
        return
    if not torch.distributed.is_initialized():
        raise TrainError(
            f"--sharding {sharding} shards the weights across processes: launch several, e.g. dysen launch "
            "--processes N -- <this command> (torchrun; see dysen launch --help)"
        )
    if mixed_precision == "fp16":
        raise TrainError(f"--sharding {sharding} trains in fp32 or bf16: pass --mixed-precision bf16 or no, not fp16")
    if aux_modules:
        raise TrainError(
            f"--sharding {sharding} does not train a second module group ({', '.join(aux_modules)}: the GAN "
            "discriminator of --disc-weight); use --sharding ddp for it"
        )


def accelerator_options(
    sharding: str, cpu: bool, units: list[nn.Module], replicated: list[nn.Module] | None = None
) -> dict[str, Any]:
    """The ``Accelerator`` arguments of a sharded run on GPUs: Accelerate's FSDP2 plugin, wrapping each block's class
    (``units``) on its own and leaving ``replicated`` modules out (``scalar_owners``), and for ``hybrid_shard`` a mesh
    of nodes × processes per node. None on the CPU, where Accelerate runs no FSDP and the loop shards (``shard``)."""
    if sharding == "ddp" or cpu:
        return {}
    from accelerate import FullyShardedDataParallelPlugin
    from accelerate.parallelism_config import ParallelismConfig

    plugin = FullyShardedDataParallelPlugin(
        fsdp_version=2,
        reshard_after_forward=True,
        auto_wrap_policy="transformer_based_wrap",
        transformer_cls_names_to_wrap=sorted({type(unit).__name__ for unit in units}),
        state_dict_type="SHARDED_STATE_DICT",
        ignored_modules=replicated or None,
    )
    options: dict[str, Any] = {"fsdp_plugin": plugin}
    if sharding == "hybrid_shard":
        nodes, per_node = _nodes()
        options["parallelism_config"] = ParallelismConfig(dp_replicate_size=nodes, dp_shard_size=per_node)
    return options


def _nodes() -> tuple[int, int]:
    """(nodes, processes per node) of this launch (torchrun's WORLD_SIZE and LOCAL_WORLD_SIZE)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    per_node = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    if per_node < 1 or world % per_node:
        raise TrainError(f"--sharding hybrid_shard needs the same number of processes on every node ({world=}, "
                         f"{per_node=})")  # fmt: skip
    return world // per_node, per_node


def make_contiguous(modules: dict[str, nn.Module]) -> None:
    """FSDP shards contiguous parameters only: put any in another memory format (an autoencoder task's channels-last
    weights) back in the standard one."""
    for module in modules.values():
        for param in module.parameters():
            if not param.is_contiguous():
                param.data = param.data.contiguous()


def shard(root: nn.Module, modules: dict[str, nn.Module], sharding: str, device: torch.device) -> None:
    """FSDP2 over gloo (the CPU path): ``fully_shard`` on every block, then on ``root`` (the rest: embeddings, heads),
    as Accelerate's plugin wraps them; 0-d parameters stay replicated (``scalar_owners``)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    if sharding == "full_shard":
        mesh = init_device_mesh(device.type, (torch.distributed.get_world_size(),))
    else:
        mesh = init_device_mesh(device.type, _nodes(), mesh_dim_names=("replicate", "shard"))  # HSDP: 2D
    scalars = {p for module in modules.values() for p in module.parameters() if p.dim() == 0}
    for unit in [*blocks(modules), root]:  # bottom-up, as fully_shard needs
        fully_shard(unit, mesh=mesh, ignored_params=scalars)


@dataclass
class ShardedModel:
    """The task's root module and what sharding changed in it, to undo at the end (``consolidate``)."""

    root: nn.Module
    classes: dict[nn.Module, type] = field(default_factory=dict)  # each module's class before sharding
    attributes: dict[nn.Module, set[str]] = field(default_factory=dict)  # attributes sharding added to it

    @classmethod
    def before(cls, root: nn.Module) -> ShardedModel:
        """Note every module's class and attributes (call before sharding, then ``sharded`` after it)."""
        return cls(root, {m: type(m) for m in root.modules()}, {m: set(vars(m)) for m in root.modules()})

    def sharded(self) -> ShardedModel:
        """Note the attributes sharding added (``fully_shard``'s state and markers)."""
        self.attributes = {m: set(vars(m)) - names for m, names in self.attributes.items()}
        return self

    @contextmanager
    def gathered(self) -> Iterator[None]:
        """The task module's own weights (all but the blocks', which gather in their forward) all-gathered, for calls
        of the trained modules outside its forward (sampling); every process enters it."""
        self.root.unshard()  # type: ignore[operator]
        try:
            yield
        finally:
            self.root.reshard()  # type: ignore[operator]

    def consolidate(self, modules: dict[str, nn.Module], main: bool) -> None:
        """Gather the trained modules' full weights (every process takes part) into the main process's modules,
        made plain modules again, on the CPU; the other processes' modules stay sharded (use them no further)."""
        full = {name: _gather(module, main) for name, module in modules.items()}
        if not main:
            return
        for module, cls in self.classes.items():
            _unhook(module)
            for name in self.attributes.get(module, ()):
                delattr(module, name)
            module.__class__ = cls
        for name, module in modules.items():
            module.load_state_dict(full[name], assign=True)
            module.cpu()


def _gather(module: nn.Module, main: bool) -> dict[str, torch.Tensor]:
    """``module``'s state dict with each sharded tensor all-gathered, on the CPU of the main process (empty on the
    others)."""
    state = {}
    for key, value in module.state_dict().items():  # the same order in every process
        full = value.full_tensor() if is_dtensor(value) else value
        if main:
            state[key] = full.detach().cpu()
    return state


def _unhook(module: nn.Module) -> None:
    """Remove the hooks ``torch.distributed`` (FSDP) registered on ``module``; the task's own stay."""
    for name in _HOOK_DICTS:
        hooks = getattr(module, name)
        for key in [key for key, hook in hooks.items() if _is_distributed(hook)]:
            del hooks[key]
            for flags in _HOOK_FLAGS:
                getattr(module, flags).pop(key, None)


def _is_distributed(hook: Any) -> bool:
    """A hook defined in ``torch.distributed`` (seen through ``nn.Module``'s wrappers, partials, bound methods)."""
    for attribute in ("hook", "func", "__func__"):
        hook = getattr(hook, attribute, hook)
    return getattr(hook, "__module__", "").startswith("torch.distributed")
