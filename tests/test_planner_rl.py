"""The RL demonstration selector (dysen.planner.rl): sampler, persistence, training and resume.

The key test trains against a simulated LLM whose answers get better the more of the chosen
demonstrations show the query's actions, and checks the policy beats random picks on held-out prompts.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, replace

import pytest
import torch

from dysen.dsg import DynamicSceneGraph, SceneGraph
from dysen.errors import DysenError
from dysen.planner.demos import DemoBank, RandomSelector, SimilaritySelector
from dysen.planner.embed import HashingEmbedder
from dysen.planner.rl import (
    PAPER_POLICY,
    DemoPolicy,
    PolicyConfig,
    PolicySelector,
    imagination_reward,
    plackett_luce_log_prob,
    train_policy,
)
from dysen.planner.types import Demonstration, DemoSelector


class SimulatedLLM:
    """Copies each gold fact and event with probability floor + gain · coverage, deterministically.

    coverage = mean over the query's action predicates of min(1, #demos showing that action / need):
    relevant demos share action words with the query (learnable from the embeddings), and random
    picks rarely cover every action.
    """

    def __init__(self, gold: dict[str, DynamicSceneGraph], floor: float = 0.1, gain: float = 0.8, need: int = 2):
        self.gold, self.floor, self.gain, self.need = gold, floor, gain, need

    def __call__(self, prompt: str, demos: list[Demonstration]) -> DynamicSceneGraph:
        gold = self.gold[prompt]
        actions = {e.predicate for e in gold.events}
        shown = Counter(a for d in demos for a in {e.predicate for e in d.dsg.events})
        p = self.floor + self.gain * sum(min(1.0, shown[a] / self.need) for a in actions) / len(actions)
        rng = random.Random(hashlib.sha256("\n".join([prompt, *(d.id for d in demos)]).encode()).digest())
        graphs = tuple(
            SceneGraph(
                objects=g.objects,
                attributes=tuple(a for a in g.attributes if rng.random() < p),
                relations=tuple(r for r in g.relations if rng.random() < p),
            )
            for g in gold.graphs
        )
        return DynamicSceneGraph(events=tuple(e for e in gold.events if rng.random() < p), graphs=graphs)


@pytest.fixture(scope="module")
def shapes() -> tuple[DemoBank, DemoBank, DemoBank, SimulatedLLM]:
    """40 candidates, 120 training prompts, 60 held-out (val) prompts, and the simulated LLM."""
    candidates = DemoBank.from_shapes(40, "train")
    train = DemoBank.from_shapes(120, "train", start=1000)
    held_out = DemoBank.from_shapes(60, "val")
    return candidates, train, held_out, SimulatedLLM({d.caption: d.dsg for d in [*train, *held_out]})


def _held_out_rewards(selector: DemoSelector, held_out: DemoBank, env: SimulatedLLM, k: int) -> list[float]:
    return [imagination_reward(env(d.caption, selector.select(d.caption, k)), d.dsg) for d in held_out]


def _brute_force_log_prob(logits: Sequence[float], order: Sequence[int]) -> float:
    """Sequential softmax sampling without replacement, renormalised after every draw."""
    left = set(range(len(logits)))
    total = 0.0
    for j in order:
        total += logits[j] - math.log(sum(math.exp(logits[i]) for i in left))
        left.remove(j)
    return total


def test_paper_preset_and_validation() -> None:
    paper = PolicyConfig.paper()
    assert paper == PAPER_POLICY
    released = {"candidates": 80, "shots": 8, "epochs": 20, "batch_size": 20, "lr": 1e-3, "train_number": 640}
    assert asdict(paper) | released | {"embedding_size": 128, "temperature": 1.0, "seed": 53} == asdict(paper)
    with pytest.raises(DysenError, match="shots"):
        PolicyConfig(candidates=4, shots=5)
    with pytest.raises(DysenError, match="batch_size"):
        PolicyConfig(batch_size=0)
    with pytest.raises(DysenError, match="unknown PolicyConfig fields"):
        PolicyConfig.from_dict({"shot_number": 8})


def test_plackett_luce_log_prob_matches_brute_force() -> None:
    logits = torch.randn(1, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)  # [1, 5]
    orders = list(itertools.permutations(range(5), 3))
    computed = plackett_luce_log_prob(logits.expand(len(orders), 5), torch.tensor(orders))  # [60]
    expected = torch.tensor([_brute_force_log_prob(logits[0].tolist(), o) for o in orders], dtype=torch.float64)
    assert torch.allclose(computed, expected, atol=1e-12)
    assert computed.exp().sum().item() == pytest.approx(1.0)  # a distribution over ordered draws


def test_sample_is_without_replacement_exact_and_deterministic() -> None:
    policy = DemoPolicy(8, 4, temperature=0.5)
    cand = torch.randn(4, 8, generator=torch.Generator().manual_seed(1))  # [4, 8]
    query = torch.randn(1, 8, generator=torch.Generator().manual_seed(2)).expand(20000, 8)  # [20000, 8]
    with torch.no_grad():
        picks, log_prob = policy.sample(query, cand, 2, torch.Generator().manual_seed(3))  # [20000, 2], [20000]
        again, _ = policy.sample(query, cand, 2, torch.Generator().manual_seed(3))
        logits = policy.scores(query[:1], cand)[0].tolist()
    assert torch.equal(picks, again)
    assert (picks[:, 0] != picks[:, 1]).all()
    counts = Counter(map(tuple, picks.flip(-1).tolist()))  # back to draw order
    for order, count in counts.items():
        expected = _brute_force_log_prob(logits, order)
        assert log_prob[picks.flip(-1).tolist().index(list(order))].item() == pytest.approx(expected, abs=1e-5)
        assert count / len(picks) == pytest.approx(math.exp(expected), abs=0.015)  # Gumbel-top-k = PL sampling
    greedy, _ = policy.sample(query[:1], cand, 4, greedy=True)
    assert greedy[0].tolist() == sorted(range(4), key=lambda j: logits[j])  # most probable last


def test_save_load_round_trip_is_bit_identical(tmp_path) -> None:
    policy = DemoPolicy(16, 8, 0.7, candidate_ids=["a", "b"], embedder="hashing-16")
    policy.save(tmp_path / "p", PolicyConfig(candidates=2, shots=1))
    loaded = DemoPolicy.load(tmp_path / "p")
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == ["config.json", "policy.safetensors"]
    for name, tensor in policy.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name])
    assert (loaded.candidate_ids, loaded.embedder, loaded.temperature) == (("a", "b"), "hashing-16", 0.7)
    policy.save(tmp_path / "p")  # overwriting swaps the folder, leaving nothing behind
    assert [p.name for p in tmp_path.iterdir()] == ["p"]


def test_load_refuses_pickles(tmp_path) -> None:
    torch.save(DemoPolicy(4, 2).state_dict(), tmp_path / "policy.pt")
    with pytest.raises(DysenError, match="refusing to unpickle"):
        DemoPolicy.load(tmp_path)


def test_trained_policy_beats_random_on_held_out_prompts(shapes) -> None:
    candidates, train, held_out, env = shapes
    embedder = HashingEmbedder(256)
    config = PolicyConfig(candidates=40, shots=4, epochs=8, batch_size=20, train_number=120, lr=1e-2)
    similarity = _held_out_rewards(SimilaritySelector(candidates, embedder), held_out, env, 4)
    gains, report = [], []
    for seed in (0, 1, 2):
        result = train_policy(replace(config, seed=seed), list(candidates), list(train), env, embedder, progress=False)
        assert result.history[-1].mean_reward > result.history[0].mean_reward
        policy = _held_out_rewards(PolicySelector(result.policy, candidates, embedder), held_out, env, 4)
        rand = _held_out_rewards(RandomSelector(candidates, seed), held_out, env, 4)
        gains += [p - r for p, r in zip(policy, rand, strict=True)]
        report.append(f"seed {seed}: policy {sum(policy) / 60:.3f} random {sum(rand) / 60:.3f}")
    mean = sum(gains) / len(gains)
    stderr = math.sqrt(sum((g - mean) ** 2 for g in gains) / (len(gains) - 1) / len(gains))
    print("; ".join(report), f"; similarity {sum(similarity) / 60:.3f}; gain {mean:.3f} ± {stderr:.3f}")
    assert mean - 2 * stderr >= 0.1  # held-out reward gain over random, lower 95% bound


def test_checkpoints_and_bit_identical_resume(shapes, tmp_path) -> None:
    candidates, train, _, env = shapes
    embedder = HashingEmbedder(32)
    config = PolicyConfig(candidates=10, shots=2, epochs=3, batch_size=5, train_number=20, lr=1e-2)
    pool, prompts = list(candidates), list(train)
    straight = train_policy(config, pool, prompts, env, embedder, out_dir=tmp_path / "a", progress=False)
    train_policy(replace(config, epochs=2), pool, prompts, env, embedder, out_dir=tmp_path / "b", progress=False)
    resumed = train_policy(config, pool, prompts, env, embedder, out_dir=tmp_path / "b", progress=False)
    assert resumed.history == straight.history
    for name, tensor in straight.policy.state_dict().items():
        assert torch.equal(tensor, resumed.policy.state_dict()[name])
    names = sorted(p.name for p in (tmp_path / "b").iterdir())
    assert names == ["best", "epoch-0001", "epoch-0002", "epoch-0003", "final"]  # no temporary folders
    best = DemoPolicy.load(tmp_path / "b" / "best")
    assert best.candidate_ids == tuple(d.id for d in pool[:10]) and best.embedder == "hashing-32"
    assert straight.best_reward == max(s.mean_reward for s in straight.history)
    with pytest.raises(DysenError, match="another config"):
        train_policy(replace(config, lr=0.5), pool, prompts, env, embedder, out_dir=tmp_path / "b", progress=False)


def test_training_data_is_checked(shapes) -> None:
    candidates, train, _, env = shapes
    config = PolicyConfig(candidates=10, shots=2, epochs=1, batch_size=5, train_number=20)
    with pytest.raises(DysenError, match="must not be candidates"):
        train_policy(config, list(candidates), list(candidates)[5:], env, HashingEmbedder(), progress=False)
    with pytest.raises(DysenError, match="asks for 10 candidates"):
        train_policy(config, list(candidates)[:3], list(train), env, HashingEmbedder(), progress=False)


def test_policy_selector_uses_its_pool_most_probable_last(shapes) -> None:
    candidates, _, held_out, _ = shapes
    embedder = HashingEmbedder(32)
    torch.manual_seed(0)
    policy = DemoPolicy(32, 8, candidate_ids=candidates.ids[5:15], embedder=embedder.name)
    selector = PolicySelector(policy, candidates, embedder)
    assert isinstance(selector, DemoSelector)
    prompt = held_out[0].caption
    picks = selector.select(prompt, 3)
    pool = candidates.take(policy.candidate_ids)
    with torch.no_grad():
        scores = policy.scores(embedder.encode([prompt]), embedder.encode([d.caption for d in pool]))[0]
    assert [d.id for d in picks] == [pool[j].id for j in scores.argsort()[-3:].tolist()]
    sampled = [PolicySelector(policy, candidates, embedder, greedy=False, seed=4).select(prompt, 5) for _ in "ab"]
    assert sampled[0] == sampled[1] and len({d.id for d in sampled[0]}) == 5
    with pytest.raises(DysenError, match="trained on 'hashing-32'"):
        PolicySelector(policy, candidates, HashingEmbedder(64))
