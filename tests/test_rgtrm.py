"""RGTrm and GraphBatch: graph structure, shapes, padding invariance, causal recurrence, gradients, save/load."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import pytest
import torch

from dysen.data.shapes import sample_clip
from dysen.dsg.convert import align_steps_to_frames
from dysen.dsg.types import DynamicSceneGraph, SceneGraph
from dysen.models.graph_batch import EDGE_TYPES, GraphBatch, GraphError
from dysen.models.rgtrm import RGTrm, RGTrmConfig
from dysen.planner.embed import HashingEmbedder

TINY = RGTrmConfig(label_dim=24, dim=32, num_layers=2, num_heads=4, memory_cells=2)


class HashLabels:
    """A deterministic stand-in text encoder: each label's vector depends on the label only."""

    dim = 24

    def __init__(self) -> None:
        self.embedder = HashingEmbedder(self.dim)

    def __call__(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError  # RGTrm only needs pooled()

    def pooled(self, texts: Sequence[str]) -> torch.Tensor:
        return self.embedder.encode(list(texts)) if texts else torch.zeros(0, self.dim)


def graph(relations=(), attributes=(), objects=()) -> SceneGraph:
    return SceneGraph.from_facts(relations=list(relations), attributes=list(attributes), objects=list(objects))


def dsg(*graphs: SceneGraph) -> DynamicSceneGraph:
    return DynamicSceneGraph(graphs=graphs)


STEP_A = graph([("circle", "left of", "square")], [("circle", "red")])
STEP_B = graph([("square", "above", "circle")], [("square", "blue"), ("circle", "jumps")])
STEP_C = graph(objects=["star"], attributes=[("star", "spins")])


def encode(model: RGTrm, dsgs: Sequence[DynamicSceneGraph], frames: int = 8):
    batch = GraphBatch.from_dsgs(dsgs, frames).with_label_embeddings(HashLabels())
    return model.encode(batch)


@pytest.fixture(scope="module")
def model() -> RGTrm:
    torch.manual_seed(0)
    return RGTrm(TINY).eval()


def test_graph_batch_layout_types_edges_and_alignment():
    batch = GraphBatch.from_dsgs([dsg(STEP_A), dsg(STEP_B, graph(), STEP_C)], num_frames=6)
    assert batch.node_label.shape == (2, 3, 5) and batch.edge_index.shape == (2, 3, 8, 2)
    assert batch.step_mask.tolist() == [[True, False, False], [True, True, True]]
    assert batch.labels[:4] == ("circle", "square", "red", "left of")
    assert batch.node_type[0, 0, :4].tolist() == [0, 0, 1, 2]  # object, object, attribute, relation
    assert batch.node_mask[0, 0].sum() == 4 and not batch.node_mask[1, 1].any()
    edges = {
        (s, t, EDGE_TYPES[k])
        for (s, t), k, real in zip(
            batch.edge_index[0, 0].tolist(), batch.edge_type[0, 0].tolist(), batch.edge_mask[0, 0], strict=True
        )
        if real
    }
    forward = {(0, 2, "attribute"), (0, 3, "subject"), (3, 1, "object")}
    assert edges == forward | {(t, s, k + "_rev") for s, t, k in forward}
    assert batch.frame_to_sg[1].int().tolist() == align_steps_to_frames(3, 6).matrix()
    assert batch.frame_to_sg[0].int().tolist() == [[1, 0, 0]] * 6  # padded steps are never shown


def test_fixed_label_index_and_its_errors():
    index = {"square": 0, "circle": 1, "left of": 2, "red": 3}
    batch = GraphBatch.from_dsgs([dsg(STEP_A)], 4, label_index=index)
    assert batch.labels == ("square", "circle", "left of", "red")
    assert batch.node_label[0, 0, :4].tolist() == [1, 0, 3, 2]
    with pytest.raises(GraphError, match="'blue' is not in the given label_index"):
        GraphBatch.from_dsgs([dsg(STEP_B)], 4, label_index={**index, "above": 4, "jumps": 5})
    with pytest.raises(GraphError, match="0..V-1"):
        GraphBatch.from_dsgs([dsg(STEP_A)], 4, label_index={"circle": 1})


def test_shapes_and_empty_graphs_give_finite_outputs(model):
    out = encode(model, [dsg(STEP_A, graph()), dsg(graph())], frames=5)
    assert out.tokens.shape == (2, 2, 32) and out.nodes.shape == (2, 2, 4, 32)
    assert out.frame_to_sg.shape == (2, 5, 2) and out.mask.tolist() == [[True, True], [True, False]]
    assert torch.isfinite(out.tokens).all() and torch.isfinite(out.nodes).all()
    assert out.tokens[1, 1].abs().sum() == 0 and out.nodes[1, 0].abs().sum() == 0  # padding is zeroed
    tokens, mask, frame_to_sg, _ = model(GraphBatch.from_dsgs([dsg(graph())], 3).with_label_embeddings(HashLabels()))
    assert torch.isfinite(tokens).all() and tokens.abs().sum() > 0  # an empty graph pools to the null token


def test_padding_nodes_and_steps_do_not_change_real_outputs(model):
    alone = encode(model, [dsg(STEP_A, STEP_C)])
    padded = encode(model, [dsg(STEP_A, STEP_C), dsg(STEP_B, STEP_B, STEP_A, STEP_C)])
    torch.testing.assert_close(padded.tokens[0, :2], alone.tokens[0], rtol=0, atol=1e-5)
    torch.testing.assert_close(padded.nodes[0, :2, :4], alone.nodes[0], rtol=0, atol=1e-5)


def test_select_gives_one_dsg_of_the_batch(model):
    batch = GraphBatch.from_dsgs([dsg(STEP_A, STEP_C), dsg(STEP_B, STEP_B, STEP_A, STEP_C)], 8)
    one = batch.select(0)
    assert one.node_label.shape[0] == one.frame_to_sg.shape[0] == 1 and one.labels == batch.labels
    alone = encode(model, [dsg(STEP_A, STEP_C)])
    selected = model.encode(one.with_label_embeddings(HashLabels()))  # M padded to the batch's 4 steps
    torch.testing.assert_close(selected.tokens[0, :2], alone.tokens[0], rtol=0, atol=1e-5)
    assert not one.step_mask[0, 2:].any()


def test_recurrence_is_causal(model):
    base = encode(model, [dsg(STEP_A, STEP_B, STEP_C)]).tokens[0]
    first_changed = encode(model, [dsg(STEP_B, STEP_B, STEP_C)]).tokens[0]
    last_changed = encode(model, [dsg(STEP_A, STEP_B, STEP_A)]).tokens[0]
    assert (first_changed[2] - base[2]).abs().max() > 1e-4  # step 0 reaches step 2 through the memory
    torch.testing.assert_close(last_changed[:2], base[:2], rtol=0, atol=1e-6)  # the future never leaks back


def test_edge_roles_distinguish_subject_from_object(model):
    one = encode(model, [dsg(graph([("circle", "left of", "square")]))]).nodes[0, 0, 2]
    swapped = encode(model, [dsg(graph([("square", "left of", "circle")], objects=["circle"]))]).nodes[0, 0, 2]
    assert (one - swapped).abs().max() > 1e-4  # the relation node knows who is the subject


def test_gradients_reach_every_parameter_on_real_shapes_dsgs():
    torch.manual_seed(1)
    model = RGTrm(TINY)
    out = encode(model, [sample_clip(i).dsg for i in range(2)], frames=16)
    assert torch.isfinite(out.tokens).all()
    (out.tokens.square().sum() + out.nodes.square().sum()).backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_save_load_is_bit_identical(model, tmp_path):
    model.save_pretrained(tmp_path / "rgtrm")
    loaded = RGTrm.from_pretrained(tmp_path / "rgtrm").eval()
    assert loaded.config == model.config
    clip = [sample_clip(3).dsg]
    assert torch.equal(encode(loaded, clip).tokens, encode(model, clip).tokens)


def test_clear_errors_for_bad_inputs():
    batch = GraphBatch.from_dsgs([dsg(STEP_A)], 4)
    with pytest.raises(GraphError, match="with_label_embeddings"):
        RGTrm(TINY)(batch)
    with pytest.raises(GraphError, match="label_dim"):
        RGTrm(RGTrmConfig(label_dim=8, dim=32, num_layers=1, num_heads=4))(batch.with_label_embeddings(HashLabels()))
    with pytest.raises(GraphError, match="divisible"):
        RGTrm(RGTrmConfig(dim=30, num_heads=4))


def test_node_readout_gives_each_frame_its_graphs_pooled_token_and_nodes():
    torch.manual_seed(0)
    steps = RGTrm(TINY).eval()
    nodes = RGTrm(dataclasses.replace(TINY, readout="nodes")).eval()
    nodes.load_state_dict(steps.state_dict())  # the readout adds no parameters
    batch = GraphBatch.from_dsgs([dsg(STEP_A, STEP_C), dsg(graph())], 4).with_label_embeddings(HashLabels())
    out = steps.encode(batch)  # M = 2 steps, N = 4 node slots
    keys, mask, frame_to_key, _ = nodes(batch)
    assert keys.shape == (2, 2 * 5, 32) and mask.shape == (2, 10) and frame_to_key.shape == (2, 4, 10)
    torch.testing.assert_close(keys.view(2, 2, 5, 32)[:, :, 0], out.tokens)  # pooled token first
    torch.testing.assert_close(keys.view(2, 2, 5, 32)[:, :, 1:], out.nodes)  # then the graph's nodes
    # clip 0: step 0 (STEP_A: circle, square, red, left of) has 4 nodes, step 1 (STEP_C: star, spins) 2
    assert mask[0].tolist() == [True] * 5 + [True, True, True, False, False]
    assert mask[1].tolist() == [True] + [False] * 9  # an empty graph: its pooled (null) token only
    # frames 0-1 show step 0 and see only its keys; frames 2-3 only step 1's
    assert frame_to_key[0, 0].tolist() == [True] * 5 + [False] * 5
    assert frame_to_key[0, 3].tolist() == [False] * 5 + [True] * 5
    with pytest.raises(GraphError, match="readout"):
        RGTrm(dataclasses.replace(TINY, readout="edges"))
