"""Layout grounding: per-frame boxes from a DSG, the planner's imagined layout, and the UNet's layout maps."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from dysen.diffusion.guidance import GuidancePass, guidance_passes, stack_passes
from dysen.dsg.layout import frame_layout
from dysen.dsg.types import Box, DynamicSceneGraph, Event, SceneGraph
from dysen.models.graph_batch import GraphBatch
from dysen.models.rgtrm import RGTrm, RGTrmConfig
from dysen.models.unet3d import UNet3D, UNet3DConfig, UNet3DError, box_coverage, object_frames
from dysen.planner.layout import imagine_layout
from dysen.planner.rules import RulesPlanner
from dysen.world import ShapesConfig, sample_clip
from dysen.world.geometry import inside


def _moving_dsg() -> DynamicSceneGraph:
    """A circle that moves right over two steps, then rests; a square that appears at step 1."""
    graphs = (
        SceneGraph.from_facts(objects=["circle"], attributes=[("circle", "moves right")]),
        SceneGraph.from_facts(objects=["circle", "square"], attributes=[("circle", "moves right")]),
        SceneGraph.from_facts(objects=["circle", "square"]),
    )
    boxes = (
        (Box(object="circle", x0=0.0, y0=0.0, x1=0.2, y1=0.2),),
        (Box(object="circle", x0=0.2, y0=0.0, x1=0.4, y1=0.2), Box(object="square", x0=0.6, y0=0.6, x1=0.8, y1=0.8)),
        (Box(object="circle", x0=0.4, y0=0.0, x1=0.6, y1=0.2), Box(object="square", x0=0.6, y0=0.6, x1=0.8, y1=0.8)),
    )
    events = (Event(agent="circle", predicate="moves right", start=0, end=2),)
    return DynamicSceneGraph(events=events, graphs=graphs, boxes=boxes)


def test_frame_layout_interpolates_keyframes_and_measures_progress() -> None:
    layout = frame_layout(_moving_dsg(), 6)  # 2 frames per step: keyframes at frames 0, 2, 4
    assert layout is not None and len(layout) == 6
    circle = [next(o for o in objects if o.object == "circle") for objects in layout]
    assert [round(o.box[0], 6) for o in circle] == [0.0, 0.1, 0.2, 0.3, 0.4, 0.4]  # held after the last keyframe
    assert [o.progress for o in circle] == [0.25, 0.5, 0.75, 1.0, None, None]  # event window = frames 0..3
    assert [sorted(o.object for o in objects) for objects in layout][:3] == [
        ["circle"],
        ["circle"],
        ["circle", "square"],
    ]


def test_frame_layout_is_none_without_boxes() -> None:
    assert frame_layout(_moving_dsg().model_copy(update={"boxes": None}), 6) is None


def test_graph_batch_layout_points_at_each_objects_node() -> None:
    dsg = _moving_dsg()
    batch = GraphBatch.from_dsgs([dsg, dsg.model_copy(update={"boxes": None})], 6)
    assert batch.layout_mask.shape == (2, 6, 2) and not batch.layout_mask[1].any()
    nodes = batch.node_mask.shape[2]
    labels = [batch.labels[i] for i in batch.node_label.view(-1).tolist()]  # flattened [B*M*N]
    for t in range(6):
        for k in range(int(batch.layout_mask[0, t].sum())):
            flat = int(batch.layout_node[0, t, k])  # m * N + n within DSG 0
            step, slot = divmod(flat, nodes)
            assert step == t // 2
            assert labels[step * nodes + slot] in ("circle", "square")
    assert batch.layout_progress[0, :, 0].tolist() == [0.25, 0.5, 0.75, 1.0, -1.0, -1.0]


def test_box_coverage_is_the_covered_share_of_each_cell() -> None:
    boxes = torch.tensor([[0.0, 0.0, 0.5, 0.25], [0.1, 0.1, 0.3, 0.9]])
    cover = box_coverage(boxes, 4, 4)  # [2, 4, 4]
    assert torch.allclose(cover[0], torch.tensor([[1.0, 1.0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]))
    area = (0.3 - 0.1) * (0.9 - 0.1)
    assert math.isclose(float(cover[1].sum()) / 16, area, rel_tol=1e-5)  # cell area 1/16


def test_object_frames_turn_with_the_object() -> None:
    box = torch.tensor([0.25, 0.25, 0.75, 0.75])  # centred, half side 2 cells of 8
    upright = object_frames(box, torch.tensor(0.0), 8, 8)  # [2, 8, 8]
    assert upright.shape == (2, 8, 8)
    assert torch.allclose(upright[0, 0], (torch.arange(8) + 0.5 - 4) / 2)  # u grows to the right
    assert torch.allclose(upright[1, :, 0], -(torch.arange(8) + 0.5 - 4) / 2)  # v grows upwards
    quarter = object_frames(box, torch.tensor(math.pi / 2), 8, 8)  # a clockwise quarter turn: 'up' now points right
    assert torch.allclose(quarter[1], upright[0], atol=1e-6) and torch.allclose(quarter[0], -upright[1], atol=1e-6)
    # the renderer's convention: a shape turned by 0.9 rad covers the cells whose (u, v) its upright outline covers
    centres = torch.arange(7) + 0.5 - 3.5  # cell centres of a 7x7 grid from the centre of the whole-frame box, cells
    dx, dy = centres[None, :].expand(7, 7).numpy(), centres[:, None].expand(7, 7).numpy()
    u, v = object_frames(torch.tensor([0.0, 0.0, 1.0, 1.0]), torch.tensor(0.9), 7, 7).numpy() * 3.5  # half side 3.5
    for shape in ("triangle", "star", "square"):
        drawn = inside(shape, dx, dy, 3.0, 0.9)
        assert drawn.any() and (drawn == inside(shape, u, -v, 3.0, 0.0)).all()


def test_layout_frames_let_the_unet_see_a_turn_and_need_the_layout() -> None:
    dsg = _moving_dsg()
    turned = dsg.model_copy(
        update={"boxes": tuple(tuple(b.model_copy(update={"angle": 0.7}) for b in step) for step in dsg.boxes)}
    )
    torch.manual_seed(1)
    z = torch.randn(1, 4, 6, 8, 8)
    outputs = {}
    for frames in (False, True):
        torch.manual_seed(1)
        unet = UNet3D(dataclasses.replace(TINY_UNET, layout_frames=frames)).eval()
        with torch.no_grad():
            for proj in unet.layout_in.proj:
                torch.nn.init.normal_(proj.weight)
            outputs[frames] = [unet(z, 10, graph_cond=_conditions(d)) for d in (dsg, turned)]  # tokens ignore the turn
    with torch.no_grad():
        unet.layout_in.gate.bias.fill_(-80.0)  # the object's gate shuts its coordinates off
        shut = [unet(z, 10, graph_cond=_conditions(d)) for d in (dsg, turned)]
    assert torch.equal(outputs[False][0], outputs[False][1])  # without frames the UNet cannot tell
    assert not torch.allclose(outputs[True][0], outputs[True][1])
    assert torch.allclose(shut[0], shut[1], atol=1e-6)
    with pytest.raises(UNet3DError, match="layout_frames .* needs layout"):
        dataclasses.replace(TINY_UNET, layout=False, layout_frames=True)


TINY_RGTRM = RGTrmConfig(label_dim=8, dim=16, num_layers=1, num_heads=2, layout=True)
TINY_UNET = UNet3DConfig(
    model_channels=16, channel_mult=(1, 2), num_res_blocks=1, attention_resolutions=(2,), head_dim=8,
    norm_groups=8, text_dim=8, dsg_dim=16, layout=True,
)  # fmt: skip


class _Labels:
    def pooled(self, labels: list[str]) -> torch.Tensor:
        gen = torch.Generator().manual_seed(0)
        table = torch.randn(64, 8, generator=gen)
        return table[[sum(map(ord, label)) % 64 for label in labels]]  # [V, 8]


def _conditions(dsg: DynamicSceneGraph, frames: int = 6, config: RGTrmConfig = TINY_RGTRM):
    torch.manual_seed(0)
    rgtrm = RGTrm(config).eval()
    return rgtrm(GraphBatch.from_dsgs([dsg], frames).with_label_embeddings(_Labels()))


def test_unet_layout_maps_start_as_identity_then_steer_where_the_boxes_are() -> None:
    dsg = _moving_dsg()
    torch.manual_seed(1)
    unet = UNet3D(TINY_UNET).eval()
    z = torch.randn(1, 4, 6, 8, 8)
    cond = _conditions(dsg)
    assert cond.objects is not None and cond.objects.tokens.shape == (1, 6, 2, 16)
    with torch.no_grad():
        plain = unet(z, 10, graph_cond=cond._replace(objects=None))
        assert torch.equal(unet(z, 10, graph_cond=cond), plain)  # zero-initialised projections
        for proj in unet.layout_in.proj:
            torch.nn.init.normal_(proj.weight)
        grounded = unet(z, 10, graph_cond=cond)
        moved = dsg.model_copy(update={"boxes": tuple(tuple(b.model_copy(update={"y0": 0.8, "y1": 1.0})
                                                           for b in step) for step in dsg.boxes)})  # fmt: skip
        elsewhere = unet(z, 10, graph_cond=_conditions(moved))
    assert not torch.allclose(grounded, plain)
    assert not torch.allclose(grounded, elsewhere)  # where the box is matters, not only that there is one


def test_object_tokens_carry_the_turn_only_with_orientation() -> None:
    dsg = _moving_dsg()
    turned = dsg.model_copy(
        update={"boxes": tuple(tuple(b.model_copy(update={"angle": 0.7}) for b in step) for step in dsg.boxes)}
    )
    batch = GraphBatch.from_dsgs([turned], 6)
    assert torch.allclose(batch.layout_angle[0][batch.layout_mask[0]], torch.tensor(0.7))
    with torch.no_grad():
        assert torch.equal(_conditions(dsg).objects.tokens, _conditions(turned).objects.tokens)  # layout only
        oriented = dataclasses.replace(TINY_RGTRM, orientation=True)
        upright, tilted = _conditions(dsg, config=oriented).objects, _conditions(turned, config=oriented).objects
    assert not torch.allclose(upright.tokens, tilted.tokens)
    assert torch.equal(upright.boxes, tilted.boxes) and torch.equal(upright.mask, tilted.mask)


def test_null_dsg_masks_the_layout_too() -> None:
    cond = _conditions(_moving_dsg())
    text = (torch.zeros(1, 3, 8), torch.ones(1, 3, dtype=torch.bool))
    _, stacked = stack_passes(guidance_passes(7.5, 2.0), text, text, cond)
    assert stacked.objects.mask.shape[0] == 3
    assert not stacked.objects.mask[:2].any() and torch.equal(stacked.objects.mask[2], cond.objects.mask[0])
    assert not cond.dropped(torch.tensor([True])).objects.mask.any()
    assert stacked.objects.angles.shape == (3, 6, 2)  # the turns travel with the passes
    unturned = cond._replace(objects=cond.objects._replace(angles=None))  # PlacedObjects built without turns
    two_passes = (GuidancePass("text", 0.5), GuidancePass("full", 0.5))
    assert stack_passes(two_passes, text, text, unturned)[1].objects.angles is None


def test_imagined_layout_keeps_every_object_in_frame_and_apart() -> None:
    planner = RulesPlanner()
    prompt = "a small red circle moves right, then a big blue square jumps while the green star spins"
    dsg = imagine_layout(planner.plan(prompt), seed=3)
    assert dsg.boxes is not None and len(dsg.boxes) == dsg.num_steps + 1  # and a keyframe at the last frame
    layout = frame_layout(dsg, 16)
    for objects in layout:
        assert {o.object for o in objects} == {"circle", "square", "star"}
        for o in objects:
            assert 0.0 <= o.box[0] < o.box[2] <= 1.0 and 0.0 <= o.box[1] < o.box[3] <= 1.0
    circle = [next(o for o in objects if o.object == "circle") for objects in layout]
    assert circle[-1].box[0] - circle[0].box[0] > 0.2  # it moved right by about 0.3 of the frame
    square_top = [next(o for o in objects if o.object == "square").box[1] for objects in layout]
    assert min(square_top[8:]) < square_top[7] - 0.15  # it jumps in the second half
    assert square_top[-1] > min(square_top[8:]) + 0.15  # and is nearly down on the last frame (held: 0.09)
    star_turn = [next(o for o in objects if o.object == "star").angle for objects in layout]
    assert star_turn == sorted(star_turn) and star_turn[-1] == pytest.approx(1.5 * 2 * math.pi / 5, abs=1e-3)
    small = dsg.boxes[0][[b.object for b in dsg.boxes[0]].index("circle")]
    assert math.isclose(small.x1 - small.x0, 2 * 0.09, abs_tol=1e-3)  # 'small' circle radius
    assert any(r.predicate == "left of" or r.predicate == "above" for r in dsg.graphs[0].relations)
    assert imagine_layout(planner.plan(prompt), seed=3) == dsg  # seeded: same prompt, same layout
    assert imagine_layout(dsg, seed=5) is dsg  # boxes already there: kept


def test_imagined_layout_skips_colour_nodes_and_unknown_actions() -> None:
    dsg = RulesPlanner().plan("a triangle appears, then it turns yellow and the circle disappears")
    boxed = imagine_layout(dsg, seed=1)
    assert boxed.boxes is not None
    assert {b.object for step in boxed.boxes for b in step} == {"triangle", "circle"}
    other = DynamicSceneGraph(
        events=(Event(agent="man", predicate="waves", start=0, end=2),),
        graphs=(SceneGraph.from_facts(objects=["man"]),) * 2,
    )
    still = imagine_layout(other, seed=0)
    assert still.boxes[0] == still.boxes[1] == still.boxes[2]  # 'waves' has no motion: the man stands still
    odd = DynamicSceneGraph(  # an LLM may name an agent by its colour alone: no object, no crash
        events=(Event(agent="red", predicate="moves left", start=0, end=1),),
        graphs=(SceneGraph.from_facts(objects=["red", "square"]),),
    )
    assert [b.object for b in imagine_layout(odd, seed=0).boxes[0]] == ["square"]


def test_imagined_layout_gives_up_without_boxes_when_nothing_fits(caplog: pytest.LogCaptureFixture) -> None:
    names = ["circle", "square", "triangle", "star"]
    graph = SceneGraph.from_facts(objects=names, attributes=[(n, "large") for n in names])
    events = tuple(Event(agent=n, predicate="moves right", start=0, end=1) for n in names)
    crowded = DynamicSceneGraph(events=events, graphs=(graph,))
    config = dataclasses.replace(ShapesConfig(), move_distance=0.6)
    assert imagine_layout(crowded, seed=0, config=config).boxes is None
    assert "no layout" in caplog.text


def test_gold_dsgs_carry_the_boxes_the_layout_reads() -> None:
    clip = sample_clip(0, "train")
    layout = frame_layout(clip.dsg, 16)
    assert layout is not None
    shown = {o.object for objects in layout for o in objects}
    assert shown == {b.object for step in clip.dsg.boxes for b in step}


def test_a_last_frame_keyframe_lands_the_clips_last_actions() -> None:
    """Without boxes[M] the last frames hold the last step's boxes (a jump stays in the air); with it they land."""
    graphs = (SceneGraph.from_facts(objects=["star", "circle"]),) * 2
    events = (
        Event(agent="star", predicate="jumps", start=1, end=2),
        Event(agent="circle", predicate="disappears", start=1, end=2),
    )
    ground = Box(object="star", x0=0.4, y0=0.6, x1=0.6, y1=0.8)
    air = Box(object="star", x0=0.4, y0=0.3, x1=0.6, y1=0.5)
    circle = Box(object="circle", x0=0.0, y0=0.0, x1=0.2, y1=0.2)
    held = DynamicSceneGraph(events=events, graphs=graphs, boxes=((ground, circle), (air, circle)))
    landed = held.model_copy(update={"boxes": ((ground, circle), (air, circle), (ground,))})
    layout = frame_layout(held, 6)  # keyframes at frames 0 and 3 (and 5 in `landed`)
    assert [o.box[1] for o in layout[5] if o.object == "star"] == [0.3]  # still in the air at the end
    assert [o.object for o in layout[5]] == ["star", "circle"]
    layout = frame_layout(landed, 6)
    star_top = [next(o.box[1] for o in objects if o.object == "star") for objects in layout]
    assert star_top == pytest.approx([0.6, 0.5, 0.4, 0.3, 0.45, 0.6])  # up over keyframes 0..3, down by frame 5
    assert [o.object for o in layout[5]] == ["star"]  # the circle has gone by the last frame
    assert [o.progress for o in layout[5]] == [1.0]


def test_last_frame_boxes_must_name_objects_of_the_last_step() -> None:
    graphs = (SceneGraph.from_facts(objects=["star"]), SceneGraph.from_facts(objects=["star"]))
    star = Box(object="star", x0=0.4, y0=0.6, x1=0.6, y1=0.8)
    with pytest.raises(ValueError, match=r"step 2 has boxes for objects not in its scene graph: \['moon'\]"):
        DynamicSceneGraph(graphs=graphs, boxes=((star,), (star,), (star.model_copy(update={"object": "moon"}),)))


def test_frame_layout_interpolates_the_turn_of_each_object() -> None:
    graphs = (SceneGraph.from_facts(objects=["square"]),) * 2
    boxes = tuple((Box(object="square", x0=0.4, y0=0.4, x1=0.6, y1=0.6, angle=a),) for a in (0.0, 1.0, 3.0))
    events = (Event(agent="square", predicate="rotates", start=0, end=2),)
    layout = frame_layout(DynamicSceneGraph(events=events, graphs=graphs, boxes=boxes), 6)  # keys 0, 3, 5
    assert [objects[0].angle for objects in layout] == pytest.approx([0.0, 1 / 3, 2 / 3, 1.0, 2.0, 3.0])


def test_gold_boxes_are_keyed_at_step_starts_and_the_last_frame_with_the_shapes_turn() -> None:
    config = ShapesConfig()
    for index in range(40):
        clip = sample_clip(index, "test")
        if any(e.predicate == "rotates" for e in clip.dsg.events):
            break
    dsg = clip.dsg
    assert len(dsg.boxes) == config.num_steps + 1
    assert dsg.boxes[-1] == clip.frame_boxes[config.num_frames - 1]
    steps = range(config.num_steps)
    assert [dsg.boxes[m] for m in steps] == [clip.frame_boxes[2 * m] for m in steps]  # 2 frames per step
    turners = {e.agent for e in dsg.events if e.predicate == "rotates"}
    assert turners, "no rotating shape in the first 40 test clips"
    for turner in turners:
        turns = [b.angle for step in dsg.boxes for b in step if b.object == turner]
        assert turns == sorted(turns) and turns[-1] > 1.0  # it turns clockwise
    assert all(b.angle == 0.0 for step in dsg.boxes for b in step if b.object not in turners)  # the rest stay upright
