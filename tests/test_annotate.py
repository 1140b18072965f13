"""Gold DSG annotation: timestamps -> quantised events, captions -> planner, frames -> VLM; resume and shards."""

from __future__ import annotations

import base64
import json

import pytest

import data_fixtures as fx
from dysen.annotate import (
    AnnotateError,
    VLMAnnotator,
    VLMOptions,
    annotate,
    caption_annotator,
    parse_frame_graphs,
    parse_shard,
    quantise_span,
    timestamps_to_dsg,
)
from dysen.cli import main
from dysen.data.datasets import Segment, load_records, read_gold
from dysen.errors import DSGError
from dysen.planner.rules import RulesPlanner
from fake_llm_server import Reply


def lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_quantise_span_rounds_clamps_and_keeps_one_step():
    assert quantise_span(0.83, 19.86, 82.73) == (0, 2)
    assert quantise_span(56.26, 79.42, 82.73) == (5, 8)
    assert quantise_span(10.0, 10.5, 40.0) == (2, 3)  # shorter than a step: still one step
    assert quantise_span(39.9, 45.0, 40.0) == (7, 8)  # past the end: the last step
    with pytest.raises(AnnotateError):
        quantise_span(0, 1, 0.0)


def test_activitynet_sentences_become_events_at_their_timestamps(tmp_path):
    records = load_records("activitynet", fx.activitynet(tmp_path), "train")
    for record in records:
        dsg = timestamps_to_dsg(record.segments, record.duration_s, steps=8)
        expected = sorted(quantise_span(s.start_s, s.end_s, record.duration_s) for s in record.segments)
        assert sorted((e.start, e.end) for e in dsg.events) == expected and dsg.num_steps == 8
    overlap = timestamps_to_dsg(records[0].segments, records[0].duration_s)
    assert [(e.agent, e.predicate, e.target) for e in overlap.events] == [
        ("woman", "walks into", "room"), ("woman", "throws", "ball"), ("dog", "catches", "ball"),
    ]  # fmt: skip
    both = {("woman", "throws", "ball"), ("dog", "catches", "ball")}
    assert {r.as_tuple() for r in overlap.graphs[5].relations} == both  # the spans overlap at step 5


def test_a_sentence_with_two_actions_shares_its_span_and_silent_steps_stay_empty():
    dsg = timestamps_to_dsg([Segment(0.0, 20.0, "A man runs, then he jumps.")], duration_s=40.0, steps=8)
    assert [(e.predicate, e.start, e.end) for e in dsg.events] == [("runs", 0, 2), ("jumps", 2, 4)]
    assert dsg.num_steps == 8 and all(not g.objects for g in dsg.graphs[4:])
    with pytest.raises(AnnotateError, match="no"):
        timestamps_to_dsg([Segment(0.0, 1.0, "...")], duration_s=2.0)


def test_cli_annotates_activitynet_and_the_dataset_reads_the_side_file(tmp_path, capsys):
    root = fx.activitynet(tmp_path / "anet")
    out = tmp_path / "gold.jsonl"
    assert main(["dsg", "annotate", "--dataset", "activitynet", "--root", str(root), "--out", str(out)]) == 0
    records = lines(out)
    assert [r["id"] for r in sorted(records, key=lambda r: r["id"])] == ["v_QOlSCBRmfWY", "v_ehGHCYKzyZ8"]
    assert {r["source"] for r in records} == {"timestamps:rules"}
    assert "2 annotated, 0 failed" in capsys.readouterr().err
    gold = read_gold(out)
    first = load_records("activitynet", root, "train")[0]
    assert gold[first.id] == timestamps_to_dsg(first.segments, first.duration_s)


def test_shards_partition_the_ids(tmp_path):
    root = tmp_path / "videos"
    for n in range(12):
        (root / f"clip{n:02d}.txt").parent.mkdir(parents=True, exist_ok=True)
        (root / f"clip{n:02d}.mp4").write_bytes(b"not decoded in captions mode")
        (root / f"clip{n:02d}.txt").write_text(f"a red circle moves right {n} times")
    done = []
    for shard in ("1/2", "2/2"):
        out = tmp_path / f"part{shard[0]}.jsonl"
        argv = ["dsg", "annotate", "--dataset", "folder", "--root", str(root), "--out", str(out), "--shard", shard]
        assert main(argv) == 0
        done.append({r["id"] for r in lines(out)})
    assert done[0] and done[1] and not done[0] & done[1]
    assert done[0] | done[1] == {f"clip{n:02d}" for n in range(12)}
    with pytest.raises(AnnotateError, match="1/4"):
        parse_shard("3/2")


class CountingPlanner:
    """The rules planner, counting calls; raises KeyboardInterrupt (a kill) at call ``stop_at``."""

    def __init__(self, stop_at: int | None = None) -> None:
        self.rules, self.calls, self.stop_at = RulesPlanner(), [], stop_at

    def plan(self, prompt: str, demonstrations=None):
        if len(self.calls) == self.stop_at:
            raise KeyboardInterrupt
        self.calls.append(prompt)
        if "fails" in prompt:
            raise DSGError("cannot plan this")
        return self.rules.plan(prompt)


def test_an_interrupted_run_resumes_without_redoing_done_ids_and_retries_failures(tmp_path):
    root = tmp_path / "videos"
    root.mkdir()
    for n in range(6):
        (root / f"v{n}.mp4").write_bytes(b"")
        (root / f"v{n}.txt").write_text("a dog runs, then it fails" if n == 1 else f"a dog jumps over log {n}")
    records, out = load_records("folder", root), tmp_path / "gold.jsonl"
    with pytest.raises(KeyboardInterrupt):
        annotate(records, caption_annotator(CountingPlanner(stop_at=3)), out, source="captions", progress=False)
    first = lines(out)
    assert [(r["id"], r["dsg"] is None) for r in first] == [("v0", False), ("v1", True), ("v2", False)]
    assert "DSGError" in first[1]["error"]
    resumed = CountingPlanner()
    report = annotate(records, caption_annotator(resumed), out, source="captions", progress=False)
    assert resumed.calls == ["a dog runs, then it fails"] + [f"a dog jumps over log {n}" for n in range(3, 6)]
    assert (report.total, report.already_done, report.annotated, report.failed) == (6, 2, 3, 1)
    assert set(read_gold(out)) == {"v0", "v2", "v3", "v4", "v5"}


VLM_ANSWER = """Frame 0: (man, holding, cup), (man, standing)
Frame 1: (man, holding, cup)
Frame 2: (man, drinking from, cup)
Frame 3: none"""


def vlm(fake_llm, **overrides) -> VLMAnnotator:
    return VLMAnnotator(VLMOptions("fake-vlm", base_url=fake_llm.base_url, steps=4, image_size=32, max_retries=0,
                                   **overrides))  # fmt: skip


def test_vlm_sends_one_image_per_step_and_reads_a_graph_per_frame(tmp_path, fake_llm):
    fx.mp4(tmp_path / "videos" / "clip.mp4", 20)
    records = load_records("folder", tmp_path / "videos")
    fake_llm.push(Reply(VLM_ANSWER))
    report = annotate(records, vlm(fake_llm), tmp_path / "gold.jsonl", source="vlm:fake-vlm", progress=False)
    assert report.annotated == 1
    content = fake_llm.requests[0].body["messages"][1]["content"]
    images = [part["image_url"]["url"] for part in content if part["type"] == "image_url"]
    assert len(images) == 4 and content[0]["type"] == "text" and '"clip"' in content[0]["text"]
    assert all(base64.b64decode(url.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n" for url in images)
    assert images[0] != images[-1]  # frames from different moments (the fixture brightens over time)
    dsg = read_gold(tmp_path / "gold.jsonl")["clip"]
    assert dsg.num_steps == 4 and not dsg.graphs[3].objects
    assert [(e.predicate, e.start, e.end) for e in dsg.events] == [("holding", 0, 2), ("drinking from", 2, 3)]


def test_vlm_unreadable_answer_is_repaired_once_then_recorded_as_failed(tmp_path, fake_llm):
    fx.mp4(tmp_path / "videos" / "clip.mp4", 20)
    record = load_records("folder", tmp_path / "videos")[0]
    fake_llm.push(Reply("Frame 0: (man, holding, cup)"), Reply(VLM_ANSWER))
    assert vlm(fake_llm)(record).num_steps == 4
    repair = fake_llm.requests[1].body["messages"]
    assert repair[2]["role"] == "assistant" and "Frame 3" in repair[3]["content"]
    fake_llm.push(Reply("no idea"), Reply("still no idea"))
    with pytest.raises(AnnotateError, match="after 1 repair"):
        vlm(fake_llm, image_format="jpeg")(record)
    assert fake_llm.requests[2].body["messages"][1]["content"][1]["image_url"]["url"].startswith("data:image/jpeg")


def test_parse_frame_graphs_counts_from_zero_or_one_and_names_bad_frames():
    assert len(parse_frame_graphs("Frame 1: (a, b)\nFrame 2: none", 2)) == 2
    with pytest.raises(DSGError, match="Frame 1"):
        parse_frame_graphs("Frame 0: (a, b)\nFrame 1: (a, (b", 2)
