"""The RL demonstration selector: "imagination rationality" (Dysen-VDM §3.3; dysen_spec.md §2.4).

A PromptPG-style policy (Lu et al., ICLR 2023) picks the K in-context demonstrations for each prompt:

* Policy. Queries x and candidates e_j are embedded by a **frozen** encoder (``dysen.planner.embed``),
  then by one trainable ``Linear(in_dim → embedding_size)`` f; s_j = ⟨f(x), f(e_j)⟩ / τ and
  π(e_j | x) = softmax_j(s_j) over the pool of ``candidates``.
* Action. ``shots`` demonstrations drawn **without replacement** by the Gumbel-top-k trick (Kool, van
  Hoof & Welling, ICML 2019): the top k of s_j + Gumbel noise is an exact ordered sample of sequential
  softmax sampling with renormalisation, i.e. of the Plackett–Luce model, whose log-probability is
      log P(j_1 … j_k | x) = Σ_t [ s_{j_t} − log Σ_{j ∉ {j_1 … j_{t−1}}} exp s_j ].
  PromptPG scores the set with Σ_t log π(e_{j_t} | x) (no renormalisation); we use the exact
  Plackett–Luce log-probability. The drawn order is reversed for the prompt: the first drawn (most
  probable) demonstration sits last, nearest the query.
* Reward. The environment (Steps I–III with these demos) returns an imagined DSG and
      R = w_tri · TriRec(imagined graphs, gold graphs) + w_apr · APR(imagined events, gold events)
  (``dysen.dsg.metrics``; the released code also adds 1/FVD of a generated video, left out here).
* Loss. REINFORCE, L = −Σ_i A_i log P(S_i | x_i), with A_i = (R_i − mean_batch R) / (std_batch R + ε)
  by default. The released code computes this z-normalised reward and then discards it
  (``batch_reward = batch_reward_raw``), i.e. A_i = R_i; ``normalise_reward=False`` restores that.
  Adam, lr 1e-3; paper preset: 80 candidates, 8 shots, 20 epochs, batch 20, 640 examples, seed 53.

Checkpoints (``out_dir``): ``epoch-NNNN/``, ``best/`` (highest mean epoch reward) and ``final/``, each a
folder written to a temporary name and renamed into place. A policy folder is ``config.json`` (sizes,
embedder name, candidate ids) + ``policy.safetensors``; epoch folders add the optimiser and generator
state so training resumes bit-identically from the latest one. Pickles are never read.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from dysen.atomic import staged_dir
from dysen.dsg import DynamicSceneGraph, action_planning_reliability, triplet_recall
from dysen.errors import DysenError
from dysen.planner.demos import DemoBank, check_k
from dysen.planner.embed import Embedder
from dysen.planner.types import Demonstration
from dysen.run_folder import changed_settings

logger = logging.getLogger(__name__)

POLICY_FORMAT = "dysen-demo-policy"
POLICY_VERSION = 1
POLICY_FILES = ("config.json", "policy.safetensors")
_PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pkl", ".pickle")

Environment = Callable[[str, list[Demonstration]], DynamicSceneGraph]
"""Plans a prompt with the given demonstrations (presentation order): the LLM planner in real use."""
Reward = Callable[[DynamicSceneGraph, DynamicSceneGraph], float]
"""Scores an imagined DSG against the gold one."""


@dataclass(frozen=True)
class PolicyConfig:
    """Settings of the RL selector; the defaults are the paper's (``dysen/scene_managing.py``)."""

    candidates: int = 80
    """Size of the candidate pool (``cand_number``); the first this many candidates given are used."""
    shots: int = 8
    """Demonstrations per prompt (``shot_number``)."""
    epochs: int = 20
    batch_size: int = 20
    lr: float = 1e-3
    """Adam learning rate (the released StepLR never steps, so it is constant)."""
    train_number: int = 640
    """Training prompts used (``train_number``); the first this many training examples given are used."""
    embedding_size: int = 128
    """Width of the trainable projection f."""
    temperature: float = 1.0
    """τ in softmax(⟨f(x), f(e)⟩ / τ)."""
    seed: int = 53
    """Seeds the projection's initialisation, the epoch shuffles and the sampling."""
    triplet_weight: float = 1.0
    """w_tri: weight of triplet recall (imagination rationality) in the reward."""
    apr_weight: float = 1.0
    """w_apr: weight of action-planning reliability in the reward."""
    normalise_reward: bool = True
    """REINFORCE advantage (R − batch mean) / batch std; False uses the raw reward as the released code."""

    def __post_init__(self) -> None:
        for name in ("candidates", "shots", "epochs", "batch_size", "train_number", "embedding_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise DysenError(f"PolicyConfig.{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.shots > self.candidates:
            raise DysenError(f"PolicyConfig.shots ({self.shots}) cannot exceed candidates ({self.candidates})")
        if not self.lr > 0 or not self.temperature > 0:
            raise DysenError(f"PolicyConfig.lr and temperature must be > 0, got {self.lr} and {self.temperature}")
        if self.normalise_reward and self.batch_size < 2:
            raise DysenError("PolicyConfig.normalise_reward needs batch_size >= 2 (a batch-mean baseline of 1 is 0)")

    @classmethod
    def paper(cls) -> PolicyConfig:
        """The released training setting: 80 candidates, 8 shots, 20 epochs, batch 20, 640 prompts, lr 1e-3."""
        return cls()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PolicyConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise DysenError(f"unknown PolicyConfig fields {unknown}; known: {sorted(known)}")
        return cls(**data)


PAPER_POLICY = PolicyConfig.paper()
TINY_POLICY = PolicyConfig(candidates=16, shots=2, epochs=2, batch_size=4, train_number=16, lr=1e-2)
"""A smoke-test preset: trains in seconds on a CPU (``dysen train-dysen --preset tiny``)."""


def imagination_reward(
    pred: DynamicSceneGraph, gold: DynamicSceneGraph, triplet_weight: float = 1.0, apr_weight: float = 1.0
) -> float:
    """R = w_tri · TriRec(graphs) + w_apr · APR(events), each term in [0, 1]."""
    rationality = triplet_recall(pred.graphs, gold.graphs)
    reliability = action_planning_reliability(pred.events, gold.events)
    return triplet_weight * rationality + apr_weight * reliability


def plackett_luce_log_prob(logits: torch.Tensor, drawn: torch.Tensor) -> torch.Tensor:
    """log P of drawing ``drawn`` [B, k] (draw order) without replacement from softmax(``logits`` [B, K]): [B]."""
    chosen = logits.gather(1, drawn)  # [B, k]
    picked = nn.functional.one_hot(drawn, logits.shape[-1])  # [B, k, K]
    earlier = (picked.cumsum(1) - picked).bool()  # [B, k, K]: drawn before step t
    remaining = logits.unsqueeze(1).masked_fill(earlier, float("-inf"))  # [B, k, K]
    return (chosen - remaining.logsumexp(-1)).sum(-1)  # [B]


class DemoPolicy(nn.Module):
    """π(e | x) = softmax(⟨f(x), f(e)⟩ / τ) over frozen embeddings, f a trainable linear map."""

    def __init__(
        self,
        in_dim: int,
        embedding_size: int = 128,
        temperature: float = 1.0,
        candidate_ids: Sequence[str] = (),
        embedder: str = "",
    ) -> None:
        """``candidate_ids`` and ``embedder`` name the pool and embedding space the policy was trained on."""
        super().__init__()
        self.in_dim = in_dim
        self.embedding_size = embedding_size
        self.temperature = temperature
        self.candidate_ids = tuple(candidate_ids)
        self.embedder = embedder
        self.proj = nn.Linear(in_dim, embedding_size)

    def scores(self, query_emb: torch.Tensor, cand_emb: torch.Tensor) -> torch.Tensor:
        """Logits ⟨f(x_i), f(e_j)⟩ / τ for queries [B, D] and candidates [K, D]: [B, K]."""
        return self.proj(query_emb) @ self.proj(cand_emb).T / self.temperature  # [B, K]

    def sample(
        self,
        query_emb: torch.Tensor,
        cand_emb: torch.Tensor,
        k: int,
        generator: torch.Generator | None = None,
        greedy: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw k candidates per query without replacement (Gumbel-top-k), or the k most probable if greedy.

        Returns (indices [B, k] in presentation order, first drawn last; log-probability of the draw [B]).
        """
        logits = self.scores(query_emb, cand_emb)  # [B, K]
        keys = logits.detach()  # [B, K]
        if not greedy:
            uniform = torch.rand(logits.shape, generator=generator).to(logits.device)  # [B, K]
            keys = keys - (-uniform.clamp_min(torch.finfo(uniform.dtype).tiny).log()).log()  # + Gumbel(0, 1)
        drawn = keys.topk(k, dim=-1).indices  # [B, k], draw order
        return drawn.flip(-1), plackett_luce_log_prob(logits, drawn)

    def save(self, directory: str | os.PathLike[str], training: PolicyConfig | None = None) -> Path:
        """Write ``config.json`` + ``policy.safetensors`` into ``directory`` as one atomic folder swap."""
        with staged_dir(directory) as tmp:
            self._write(tmp, training)
        return Path(directory)

    def _write(self, directory: Path, training: PolicyConfig | None) -> None:
        from safetensors.torch import save_file

        config = {
            "format": POLICY_FORMAT,
            "version": POLICY_VERSION,
            "in_dim": self.in_dim,
            "embedding_size": self.embedding_size,
            "temperature": self.temperature,
            "embedder": self.embedder,
            "candidate_ids": list(self.candidate_ids),
            "training": None if training is None else asdict(training),
        }
        (directory / "config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False), encoding="utf-8")
        save_file({k: v.detach().contiguous() for k, v in self.state_dict().items()}, directory / "policy.safetensors")

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> DemoPolicy:
        """Read a folder written by ``save``; pickled checkpoints are refused."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        directory = Path(directory)
        weights = directory / "policy.safetensors"
        if not weights.is_file():
            pickles = [p.name for p in directory.glob("*") if p.suffix in _PICKLE_SUFFIXES]
            hint = f"; refusing to unpickle {pickles}: convert them to safetensors" if pickles else ""
            raise DysenError(f"{directory} holds no policy.safetensors{hint}")
        config = _read_json(directory / "config.json")
        if config.get("format") != POLICY_FORMAT or config.get("version") != POLICY_VERSION:
            raise DysenError(f"{directory}/config.json is not a {POLICY_FORMAT} v{POLICY_VERSION} config")
        try:
            sizes = (config["in_dim"], config["embedding_size"], config["temperature"])
            policy = cls(*sizes, candidate_ids=config["candidate_ids"], embedder=config["embedder"])
            policy.load_state_dict(load_file(weights))
        except (KeyError, TypeError, SafetensorError, RuntimeError, OSError) as err:
            raise DysenError(f"{directory}: config.json and policy.safetensors disagree: {err!r}") from None
        return policy


def copy_policy(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> Path:
    """Copy the saved policy folder ``source`` to ``target`` byte for byte (its training record kept), after
    checking that it loads; ``target`` is replaced atomically."""
    DemoPolicy.load(source)
    with staged_dir(target) as tmp:
        for name in POLICY_FILES:
            shutil.copyfile(Path(source) / name, tmp / name)
    return Path(target)


@dataclass(frozen=True)
class EpochStats:
    """One training epoch: its number (from 1), mean reward over its episodes and mean batch loss."""

    epoch: int
    mean_reward: float
    loss: float


@dataclass(frozen=True)
class PolicyTrainResult:
    """The trained policy (final epoch), per-epoch statistics, the best epoch and where checkpoints are."""

    policy: DemoPolicy
    history: tuple[EpochStats, ...]
    best_epoch: int
    best_reward: float
    out_dir: Path | None


def train_policy(
    policy_config: PolicyConfig,
    candidates: Sequence[Demonstration],
    train: Sequence[Demonstration],
    env: Environment,
    embedder: Embedder,
    reward: Reward | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> PolicyTrainResult:
    """Train the selector by REINFORCE; ``reward`` defaults to ``imagination_reward`` with the config's weights.

    Resumes from the latest ``epoch-NNNN`` checkpoint of ``out_dir`` when there is one.
    """
    config = policy_config
    pool, examples = _pools(config, candidates, train)
    cand_emb = embedder.encode([d.caption for d in pool]).float()  # [C, D]
    query_emb = embedder.encode([d.caption for d in examples]).float()  # [N, D]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        policy = DemoPolicy(
            cand_emb.shape[1], config.embedding_size, config.temperature, [d.id for d in pool], embedder.name
        )
    optimizer = torch.optim.Adam(policy.parameters(), lr=config.lr)
    generator = torch.Generator().manual_seed(config.seed)
    out = Path(out_dir) if out_dir is not None else None
    history = _resume(out, config, policy, optimizer, generator) if out is not None else []
    score = reward or (lambda p, g: imagination_reward(p, g, config.triplet_weight, config.apr_weight))
    episode = _Episode(pool, examples, env, score, cand_emb, query_emb)
    for epoch in range(len(history), config.epochs):
        history.append(_run_epoch(epoch, config, policy, optimizer, generator, episode, progress))
        logger.info("epoch %d/%d: mean reward %.4f", epoch + 1, config.epochs, history[-1].mean_reward)
        if out is not None:
            _save_checkpoint(out, epoch + 1, config, policy, optimizer, generator, history)
    if out is not None:
        policy.save(out / "final", config)
    best = max(history, key=lambda s: s.mean_reward)
    return PolicyTrainResult(policy, tuple(history), best.epoch, best.mean_reward, out)


def _pools(
    config: PolicyConfig, candidates: Sequence[Demonstration], train: Sequence[Demonstration]
) -> tuple[list[Demonstration], list[Demonstration]]:
    """The first ``config.candidates`` candidates and ``config.train_number`` training prompts, disjoint."""
    if len(candidates) < config.candidates or len(train) < config.train_number:
        raise DysenError(
            f"the policy config asks for {config.candidates} candidates and {config.train_number} training "
            f"examples, but {len(candidates)} and {len(train)} were given"
        )
    pool, examples = list(candidates[: config.candidates]), list(train[: config.train_number])
    DemoBank(pool)  # ids must be unique
    shared = {d.id for d in pool} & {d.id for d in examples}
    if shared:
        raise DysenError(f"training prompts must not be candidates (the policy would copy them): {sorted(shared)[:3]}")
    return pool, examples


@dataclass(frozen=True)
class _Episode:
    """Everything one REINFORCE episode needs besides the policy."""

    pool: list[Demonstration]
    examples: list[Demonstration]
    env: Environment
    reward: Reward
    cand_emb: torch.Tensor  # [C, D]
    query_emb: torch.Tensor  # [N, D]

    def rewards(self, batch: list[int], picks: list[list[int]]) -> torch.Tensor:
        """Plan each prompt of ``batch`` with its picked demos (presentation order) and score it: [B]."""
        out = []
        for i, row in zip(batch, picks, strict=True):
            imagined = self.env(self.examples[i].caption, [self.pool[j] for j in row])
            out.append(float(self.reward(imagined, self.examples[i].dsg)))
        return torch.tensor(out)  # [B]


def _run_epoch(
    epoch: int,
    config: PolicyConfig,
    policy: DemoPolicy,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    episode: _Episode,
    progress: bool,
) -> EpochStats:
    """One pass over the shuffled training prompts, one Adam step per batch."""
    policy.train()
    order = torch.randperm(len(episode.examples), generator=generator)  # [N]
    rewards: list[float] = []
    losses: list[float] = []
    bar = tqdm(order.split(config.batch_size), desc=f"policy epoch {epoch + 1}/{config.epochs}", disable=not progress)
    for batch in bar:
        queries = episode.query_emb[batch]  # [B, D]
        picks, log_prob = policy.sample(queries, episode.cand_emb, config.shots, generator)  # [B, k], [B]
        reward = episode.rewards(batch.tolist(), picks.tolist())  # [B]
        advantage = reward  # [B], the released code's raw reward
        if config.normalise_reward:
            advantage = (reward - reward.mean()) / (reward.std(unbiased=False) + 1e-6)  # [B]
        loss = -(advantage * log_prob).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        rewards += reward.tolist()
        losses.append(loss.item())
        bar.set_postfix(reward=f"{sum(rewards) / len(rewards):.3f}")
    return EpochStats(epoch + 1, sum(rewards) / len(rewards), sum(losses) / len(losses))


def _save_checkpoint(
    out: Path,
    epoch: int,
    config: PolicyConfig,
    policy: DemoPolicy,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    history: list[EpochStats],
) -> None:
    """``epoch-NNNN/`` with policy, optimiser and generator state; ``best/`` when this epoch is the best."""
    from safetensors.torch import save_file

    with staged_dir(out / f"epoch-{epoch:04d}") as tmp:
        policy._write(tmp, config)
        adam = optimizer.state_dict()["state"]
        state = {f"optimizer.{p}.{name}": torch.as_tensor(v).clone() for p, g in adam.items() for name, v in g.items()}
        save_file({**state, "generator": generator.get_state()}, tmp / "trainer.safetensors")
        trainer = {"epoch": epoch, "config": asdict(config), "history": [asdict(s) for s in history]}
        (tmp / "trainer.json").write_text(json.dumps(trainer, indent=2), encoding="utf-8")
    if history[-1].mean_reward > max((s.mean_reward for s in history[:-1]), default=float("-inf")):
        policy.save(out / "best", config)


def _resume(
    out: Path, config: PolicyConfig, policy: DemoPolicy, optimizer: torch.optim.Optimizer, generator: torch.Generator
) -> list[EpochStats]:
    """Load the latest epoch checkpoint of ``out`` into the objects given; its history (empty when none)."""
    from safetensors.torch import load_file

    epochs = sorted(p for p in out.glob("epoch-[0-9][0-9][0-9][0-9]") if p.is_dir())
    if not epochs:
        return []
    latest = epochs[-1]
    trainer = _read_json(latest / "trainer.json")
    saved = PolicyConfig.from_dict(trainer["config"])
    if changed_settings(asdict(saved), asdict(config), resumable={"epochs"}) or trainer["epoch"] > config.epochs:
        raise DysenError(f"{out} holds a run with another config ({saved}); use a new out_dir to start afresh")
    loaded = DemoPolicy.load(latest)
    if loaded.candidate_ids != policy.candidate_ids or loaded.embedder != policy.embedder:
        raise DysenError(f"{out} holds a run with another candidate pool or embedder; use a new out_dir")
    policy.load_state_dict(loaded.state_dict())
    tensors = load_file(latest / "trainer.safetensors")
    generator.set_state(tensors.pop("generator"))
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        _, pid, name = key.split(".")
        state.setdefault(int(pid), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": optimizer.state_dict()["param_groups"]})
    logger.info("resumed policy training from %s", latest)
    return [EpochStats(**s) for s in trainer["history"]]


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DysenError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DysenError(f"{path}: not readable JSON: {err}") from None
    if not isinstance(data, dict):
        raise DysenError(f"{path}: expected a JSON object")
    return data


class PolicySelector:
    """Demonstrations picked by a trained ``DemoPolicy`` from its own candidate pool, most probable last."""

    def __init__(
        self, policy: DemoPolicy, bank: DemoBank, embedder: Embedder, greedy: bool = True, seed: int = 0
    ) -> None:
        """``bank`` must hold the policy's candidates; non-greedy picks are reproducible per (seed, prompt)."""
        if not policy.candidate_ids:
            raise DysenError("the policy names no candidate pool; train it with train_policy or load a saved one")
        if policy.embedder and policy.embedder != embedder.name:
            raise DysenError(f"the policy was trained on {policy.embedder!r} embeddings, not {embedder.name!r}")
        self.policy = policy.eval()
        self.pool = bank.take(policy.candidate_ids)
        self.embedder = embedder
        self.greedy = greedy
        self.seed = seed
        self._cand_emb: torch.Tensor | None = None

    def select(self, prompt: str, k: int) -> list[Demonstration]:
        check_k(k, len(self.pool))
        if self._cand_emb is None:
            self._cand_emb = self.embedder.encode([d.caption for d in self.pool]).float()  # [C, D]
        query = self.embedder.encode([prompt]).float()  # [1, D]
        digest = hashlib.sha256(f"{self.seed}\n{prompt}".encode()).digest()
        generator = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))
        with torch.no_grad():
            picks, _ = self.policy.sample(query, self._cand_emb, k, generator, greedy=self.greedy)  # [1, k]
        return [self.pool[j] for j in picks[0].tolist()]
