"""Sharded training (issue 26): ``--sharding full_shard`` / ``hybrid_shard`` over 2 CPU processes (gloo), through
torch's FSDP2 as the loop drives it on the CPU (Accelerate runs no FSDP there), against the unsharded (DDP) run.

One ``torch.distributed.run`` (``tests/sharded_runs.py``) trains the wan-test backbone 4 steps four ways: DDP, full
shard (with sampling), full shard stopped after 2 steps and resumed, hybrid shard; then a DSG adapter (0-d gates,
which stay replicated) and a tiny autoencoder (channels-last weights) 2 steps each, sharded. Tolerances: losses as the
DDP test (rel 1e-5, abs 1e-6); weights rtol 1e-5, atol 1e-6 (fp32 summation order; the runs here differ by < 1e-7).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from dysen.cli import main
from dysen.train.checkpoint import TrainCheckpointError, load_checkpoint, step_folder
from dysen.train.errors import TrainError
from dysen.train.loop import StepOutput, TrainConfig, _TaskModule, train
from dysen.train.sharded_checkpoint import load_sharded, sharded_tensors
from dysen.train.sharding import ShardedModel, accelerator_options, blocks, check_sharding, is_dtensor, shard

HERE = Path(__file__).resolve().parent
TRANSFORMER = Path("model") / "transformer" / "diffusion_pytorch_model.safetensors"
SHARDED = ("full", "resumed", "hybrid")
STEPS = 4


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The runs of ``tests/sharded_runs.py`` (2 processes, 1 thread each)."""
    from dysen.config import save_config
    from pipeline_fixtures import TINY

    root = tmp_path_factory.mktemp("sharded")
    save_config(TINY, root / "tiny.yaml")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([*launcher, str(HERE / "sharded_runs.py"), str(root)], env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return root


def _losses(run: Path) -> dict[int, float]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return {entry["step"]: entry["loss"] for entry in map(json.loads, lines)}


def _assert_close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=key)


@pytest.mark.slow
def test_sharded_runs_repeat_the_unsharded_losses_and_a_resume_repeats_them(runs: Path) -> None:
    ddp = _losses(runs / "ddp")
    assert sorted(ddp) == list(range(1, STEPS + 1))
    for name in SHARDED:
        assert _losses(runs / name) == pytest.approx(ddp, rel=1e-5, abs=1e-6), name
    assert sorted(_losses(runs / "resumed")) == list(range(1, STEPS + 1)), "steps 3-4 continued from step 2"
    assert (runs / "full" / "samples" / "step-00000002" / "clip-0.mp4").stat().st_size > 0, "sampled while sharded"


@pytest.mark.slow
def test_the_ema_moves_over_the_shards_and_checkpoints_are_sharded(runs: Path) -> None:
    folder = step_folder(runs / "full", STEPS)
    ema2, ema4 = sharded_tensors(step_folder(runs / "full", 2), "ema"), sharded_tensors(folder, "ema")
    moved = max(float((ema4[k] - ema2[k]).abs().max()) for k in ema4)
    assert moved > 1e-4, "the EMA of the sharded parameters stayed where it was"
    reference = load_checkpoint(step_folder(runs / "ddp", STEPS))
    assert reference.ema is not None
    _assert_close(ema4, {k: v for k, v in reference.ema.items() if not k.startswith("_")})
    _assert_close(sharded_tensors(folder, "weights"), reference.weights)
    key = "weights.transformer.blocks.0.ffn.net.0.proj.weight"  # [16, 16]: 8 rows in each process's file
    for name in ("full", "hybrid"):
        files = sorted((step_folder(runs / name, STEPS) / "sharded").glob("*.safetensors"))
        assert len(files) == 2, "one file per process"
        rows = []
        for path in files:
            with safe_open(str(path), "pt") as file:
                rows.append(file.get_slice(key).get_shape()[0])
        assert rows == [8, 8], name
    with pytest.raises(TrainCheckpointError, match="sharded checkpoint .* same --sharding"):
        load_checkpoint(folder)
    with pytest.raises(TrainCheckpointError, match="unsharded checkpoint .* --sharding ddp"):
        load_sharded(step_folder(runs / "ddp", STEPS), {})


@pytest.mark.slow
def test_the_exported_model_equals_the_unsharded_runs(runs: Path, tmp_path: Path) -> None:
    from dysen.backbones.folder import load_backbone

    reference = load_file(runs / "ddp" / TRANSFORMER)
    for name in SHARDED:
        _assert_close(load_file(runs / name / TRANSFORMER), reference)
    exported, ema = load_file(runs / "full" / TRANSFORMER), sharded_tensors(step_folder(runs / "full", STEPS), "ema")
    assert all(torch.equal(exported[k.partition(".")[2]], v) for k, v in ema.items()), "the final EMA, gathered"
    vae = Path("model") / "vae" / "model.safetensors"
    assert (runs / "full" / vae).read_bytes() == (runs / "ddp" / vae).read_bytes()
    assert load_backbone(runs / "full" / "model").transformer is not None
    assert main(["model", "export", str(runs / "full"), "--step", "2", "--out", str(tmp_path / "step2")]) == 0
    ema2 = sharded_tensors(step_folder(runs / "full", 2), "ema")
    step2 = load_file(tmp_path / "step2" / TRANSFORMER.relative_to("model"))
    assert all(torch.equal(step2[k.partition(".")[2]], v) for k, v in ema2.items())


@pytest.mark.slow
def test_an_adapters_replicated_gates_and_an_autoencoders_channels_last_weights_train_sharded(runs: Path) -> None:
    """FSDP cannot shard a 0-d parameter (the adapter's gate γ): it stays whole in each process and the loop averages
    its gradient; FSDP needs contiguous weights (the autoencoder task's are channels-last). The autoencoder's weights
    are compared with the checkpoint's, not with DDP's: its convolutions change kernels with the memory format, and
    AdamW turns that fp32 noise in the zero gradients of biases before a GroupNorm into steps of ±lr."""
    from sharded_runs import adapter_args

    assert main([*adapter_args(runs, "adapter-1"), "--grad-accum", "2"]) == 0  # 1 process, the same global batch
    assert _losses(runs / "adapter") == pytest.approx(_losses(runs / "adapter-1"), rel=1e-5, abs=1e-6)
    sharded, single = (load_file(runs / name / "model" / "model.safetensors") for name in ("adapter", "adapter-1"))
    _assert_close(sharded, single)
    gates = [key for key in sharded if sharded[key].dim() == 0]
    assert gates and all(float(sharded[key]) != 0 for key in gates), "the gates (0 at the start) learned"
    # under DDP too (the RGTrm's pooled step tokens, which the adapter does not read, are frozen: DDP stopped on them)
    assert _losses(runs / "adapter-ddp") == pytest.approx(_losses(runs / "adapter-1"), rel=1e-5, abs=1e-6)
    _assert_close(load_file(runs / "adapter-ddp" / "model" / "model.safetensors"), single)
    assert _losses(runs / "vae-full") == pytest.approx(_losses(runs / "vae-ddp"), rel=1e-5, abs=1e-6)
    exported = load_file(runs / "vae-full" / "model" / "model.safetensors")
    ema = sharded_tensors(step_folder(runs / "vae-full", 2), "ema")
    assert all(torch.equal(exported[k.partition(".")[2]], v) for k, v in ema.items()), "the final EMA, gathered"


def test_the_blocks_are_the_members_of_the_outermost_module_lists() -> None:
    from dysen.train.backbone_task import BACKBONE_PRESETS

    transformer = BACKBONE_PRESETS["wan-test"].transformer.build(4, 384)
    units = blocks({"transformer": transformer})
    assert units == list(transformer.blocks), "a block's own lists (attention's to_out) stay inside it"
    assert blocks({"linear": torch.nn.Linear(2, 2)}) == []


def test_on_gpus_accelerates_fsdp2_plugin_wraps_the_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    from dysen.train.backbone_task import BACKBONE_PRESETS

    units = list(BACKBONE_PRESETS["wan-test"].transformer.build(4, 384).blocks)
    assert accelerator_options("full_shard", True, units) == {} and accelerator_options("ddp", False, units) == {}
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    options = accelerator_options("hybrid_shard", False, units)
    plugin = options["fsdp_plugin"]
    assert plugin.fsdp_version == 2 and plugin.reshard_after_forward is True
    assert plugin.transformer_cls_names_to_wrap == ["WanTransformerBlock"]
    config = options["parallelism_config"]
    assert (config.dp_replicate_size, config.dp_shard_size) == (2, 2)
    assert "parallelism_config" not in accelerator_options("full_shard", False, units)


def test_what_a_sharded_run_cannot_do_is_refused(tmp_path: Path) -> None:
    from accelerate.utils import DistributedType

    from dysen.data.shapes import ShapesConfig
    from dysen.data.shapes.dataset import ShapesDataset, collate
    from dysen.models.vae import KLVideoAutoencoder
    from dysen.train.stages import VAETask
    from pipeline_fixtures import TINY

    config = TrainConfig(steps=1, batch_size=2, sharding="full_shard")
    dataset = ShapesDataset(2, config=ShapesConfig(size=16, num_frames=8))
    with pytest.raises(TrainError, match="launch several"):  # one process, no process group
        train(VAETask(KLVideoAutoencoder(TINY.vae.kl3d)), dataset, collate, config, tmp_path / "run")
    assert not (tmp_path / "run").exists(), "refused before the run folder is written"
    deepspeed = SimpleNamespace(distributed_type=DistributedType.DEEPSPEED)
    with pytest.raises(TrainError, match="DeepSpeed"):
        check_sharding("full_shard", deepspeed, "no", {})
    fsdp = SimpleNamespace(distributed_type=DistributedType.FSDP)
    with pytest.raises(TrainError, match="Accelerate FSDP config"):
        check_sharding("ddp", fsdp, "no", {})
    with pytest.raises(TrainError, match="invalid TrainConfig"):
        TrainConfig(sharding="zero3")  # type: ignore[arg-type]


class Counting:
    """A task whose loss is the sum of its one weight times the batch's number; counts its steps."""

    def __init__(self) -> None:
        self.weight, self.calls = torch.nn.Linear(1, 1, bias=False), 0

    def step(self, batch: dict[str, Any], generator: torch.Generator) -> StepOutput:
        self.calls += 1
        return StepOutput(self.weight.weight.sum() * batch["x"], {"x": torch.tensor(float(batch["x"]))})


def test_an_empty_micro_batch_of_a_sharded_run_replays_the_last_one_at_weight_0() -> None:
    """Every process must run every sharded module in each micro-batch (their all-gathers): a process whose clips all
    failed reruns its last good batch, with no gradient."""
    task = Counting()
    model = _TaskModule(task, {"weight": task.weight}, sharded=True)  # type: ignore[arg-type]
    generator = torch.Generator()
    empty = {"skipped": 2, "id": []}
    with pytest.raises(TrainError, match="first micro-batch had no clip that loads"):
        model(empty, generator)
    assert float(model({"x": 3.0, "id": [0]}, generator).loss.detach()) != 0
    replayed = model(empty, generator)
    assert task.calls == 2 and float(replayed.loss.detach()) == 0 and float(replayed.logs["x"]) == 0
    replayed.loss.backward()
    assert torch.equal(task.weight.weight.grad, torch.zeros(1, 1))


class Net(torch.nn.Module):
    """Two blocks in a list, a head and a 0-d gate."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = torch.nn.ModuleList([torch.nn.Linear(4, 4), torch.nn.Linear(4, 4)])
        self.head = torch.nn.Linear(4, 1)
        self.gate = torch.nn.Parameter(torch.tensor(0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = torch.relu(block(x))
        return self.head(x) * self.gate


def _own_hook(module: torch.nn.Module, args: Any, output: torch.Tensor) -> None:
    module.calls = getattr(module, "calls", 0) + 1  # type: ignore[assignment]


def test_consolidate_turns_the_sharded_modules_back_into_plain_ones_with_the_full_weights(tmp_path: Path) -> None:
    """One gloo process in this one: the module keeps its identity, class and own hooks, and holds full tensors."""
    torch.distributed.init_process_group("gloo", store=torch.distributed.HashStore(), rank=0, world_size=1)
    try:
        torch.manual_seed(0)
        net = Net()
        handle = net.head.register_forward_hook(_own_hook)
        task = SimpleNamespace(step=lambda batch, generator: StepOutput(net(batch["x"]).sum(), {}))
        modules = {"net": net}
        root = _TaskModule(task, modules, sharded=True)  # type: ignore[arg-type]
        sharded = ShardedModel.before(root)
        shard(root, modules, "full_shard", torch.device("cpu"))
        sharded.sharded()
        assert is_dtensor(net.head.weight) and not is_dtensor(net.gate), "a 0-d parameter stays whole"
        x = torch.randn(3, 4)
        root({"x": x, "id": [0]}, torch.Generator()).loss.backward()
        expected = {k: v.full_tensor() if is_dtensor(v) else v for k, v in net.state_dict().items()}
        with sharded.gathered():
            out = net(x).detach()
        sharded.consolidate(modules, main=True)
        assert type(root) is _TaskModule and type(net) is Net and type(net.blocks[0]) is torch.nn.Linear
        assert not any(is_dtensor(p) for p in net.parameters()) and net.head.weight.requires_grad
        assert all(torch.equal(v, expected[k]) for k, v in net.state_dict().items())
        calls = net.head.calls  # type: ignore[union-attr]
        assert torch.equal(net(x), out) and net.head.calls == calls + 1, "its own hook stays, FSDP's are gone"
        handle.remove()
    finally:
        torch.distributed.destroy_process_group()
