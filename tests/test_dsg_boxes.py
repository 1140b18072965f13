"""Boxes for real videos' gold DSGs from a tracker's MOTChallenge output (``dysen.annotate.tracks``, ``dysen dsg
boxes``): tracks are read and labelled, matched to the DSG's objects by head noun (``person`` for people), boxed at
each step's first frame and the last frame (interpolated across a gap), on a real clip's size and length."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from dysen.annotate.tracks import Track, TrackError, add_track_boxes, fits, match_tracks, read_mot
from dysen.cli import main
from dysen.dsg import DynamicSceneGraph
from test_video import REAL, needs_real

WALK = {
    "events": [
        {"agent": "man", "predicate": "walks", "target": "dog", "start": 0, "end": 2},
        {"agent": "man", "predicate": "throws", "target": "ball", "start": 2, "end": 4},
    ],
    "graphs": [
        {"objects": ["man", "dog"]},
        {"objects": ["man", "dog"]},
        {"objects": ["man", "dog", "ball"]},
        {"objects": ["man", "dog", "ball"]},
    ],
}
NAMES = "person\ndog\nsports ball\n"


def _mot_lines() -> str:
    """68 frames: person 1 walks right all along; dog 2 is lost over frames 31-39; person 3 is a 5-frame blip."""
    lines = [f"{f},1,{10 + 2 * f},50,40,100,0.9,0,-1,-1" for f in range(1, 69)]
    lines += [f"{f},2,{100 + f},150,60,40,0.8,1,-1,-1" for f in [*range(1, 31), *range(40, 69)]]
    lines += [f"{f},3,5,5,20,20,0.3,0,-1,-1" for f in range(1, 6)]
    return "\n".join(lines) + "\n"


def real_data_with_tracks(folder: Path) -> dict[str, Path]:
    """A folder dataset of two real clips (tree.avi: 68 frames of 320x240, with tracks; cup.mp4: none), their gold
    DSGs, a MOTChallenge tracks folder and a class-names file."""
    root, tracks = folder / "videos", folder / "tracks"
    root.mkdir(parents=True)
    tracks.mkdir()
    shutil.copy(REAL / "tree.avi", root / "walk.avi")
    (root / "walk.txt").write_text("a man walks a dog, then the man throws a ball")
    shutil.copy(REAL / "cup.mp4", root / "cup.mp4")
    (root / "cup.txt").write_text("a cup on a table")
    (tracks / "walk.txt").write_text(_mot_lines())
    (folder / "names.txt").write_text(NAMES)
    cup = DynamicSceneGraph.from_dict({"graphs": [{"objects": ["cup"]}]})
    gold = [{"id": "walk", "dsg": DynamicSceneGraph.from_dict(WALK).to_dict()}, {"id": "cup", "dsg": cup.to_dict()}]
    (folder / "gold.jsonl").write_text("".join(json.dumps(line) + "\n" for line in gold))
    return {"root": root, "tracks": tracks, "names": folder / "names.txt", "gold": folder / "gold.jsonl"}


def test_mot_tracks_are_read_and_labelled(tmp_path: Path) -> None:
    path = tmp_path / "walk.txt"
    path.write_text(_mot_lines())
    tracks = read_mot(path, classes=["person", "dog", "sports ball"])
    assert [(t.id, t.label, len(t.boxes)) for t in tracks] == [(1, "person", 68), (2, "dog", 59), (3, "person", 5)]
    assert tracks[0].boxes[0] == (12.0, 50.0, 52.0, 150.0)  # frame 1 -> 0; (left, top, left + w, top + h)
    assert [t.label for t in read_mot(path, label="player")] == ["player"] * 3
    assert [t.id for t in read_mot(path, label="person", min_confidence=0.5)] == [1, 2]
    with pytest.raises(TrackError, match="one of --label"):
        read_mot(path)
    path.write_text("1,1,10,10\n")
    with pytest.raises(TrackError, match="walk.txt:1: not a MOTChallenge line"):
        read_mot(path, label="person")
    path.write_text("1,1,10,10,5,5,0.9,7\n")
    with pytest.raises(TrackError, match="class 7 is not in the 3 class names"):
        read_mot(path, classes=["person", "dog", "sports ball"])


def test_objects_take_the_longest_fitting_track_and_gaps_are_interpolated() -> None:
    assert fits("sports ball", "red ball") and fits("person", "old man") and not fits("dog", "cat")
    dsg = DynamicSceneGraph.from_dict(WALK)
    tracks = [Track(3, "person", {0: (0, 0, 1, 1)}), Track(1, "person", {0: (0, 0, 2, 2), 10: (10, 0, 12, 2)})]
    assert {name: t.id for name, t in match_tracks(dsg, tracks).items()} == {"man": 1}
    assert tracks[1].box_at(5) == (5.0, 0.0, 7.0, 2.0) and tracks[1].box_at(11) is None


def test_boxes_land_at_each_steps_first_frame_and_the_last(tmp_path: Path) -> None:
    path = tmp_path / "walk.txt"
    path.write_text(_mot_lines())
    tracks = read_mot(path, classes=["person", "dog", "sports ball"])
    result = add_track_boxes(DynamicSceneGraph.from_dict(WALK), tracks, 68, 320, 240)
    assert (result.boxed, result.objects) == (2, 3)  # no ball was tracked
    boxes = result.dsg.boxes
    assert result.dsg.layout_source == "given" and len(boxes) == 5  # 4 steps + the last frame
    man = [next(b for b in step if b.object == "man") for step in boxes]
    firsts = [0, 17, 34, 51, 67]  # each step's first frame of 68, then the last
    assert [round(b.x0 * 320) for b in man] == [10 + 2 * (f + 1) for f in firsts]
    assert man[0].y0 == pytest.approx(50 / 240) and man[0].y1 == pytest.approx(150 / 240)
    dog = next(b for b in boxes[2] if b.object == "dog")  # frame 34: inside the dog's gap (frames 30..38)
    assert dog.x0 * 320 == pytest.approx(100 + 35)  # interpolated between its frames 29 and 39 (0-based)
    assert all(b.object != "ball" for step in boxes for b in step)
    nothing = add_track_boxes(DynamicSceneGraph.from_dict(WALK), [Track(9, "car", {0: (0, 0, 5, 5)})], 68, 320, 240)
    assert nothing.dsg.boxes is None and nothing.boxed == 0


@needs_real
def test_dsg_boxes_cli_on_real_clips(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = real_data_with_tracks(tmp_path)
    out = tmp_path / "boxed.jsonl"
    argv = ["dsg", "boxes", "--dataset", "folder", "--root", str(data["root"]), "--gold", str(data["gold"])]
    argv += ["--tracks", str(data["tracks"]), "--out", str(out)]
    assert main([*argv, "--classes", str(data["names"])]) == 0
    err = capsys.readouterr().err
    assert "wrote 1 DSGs with boxes" in err and "2 of 3 objects matched a track" in err and "1 no tracks file" in err
    [record] = [json.loads(line) for line in out.read_text().splitlines()]
    assert record["id"] == "walk" and record["source"] == "tracks:mot"
    assert len(DynamicSceneGraph.from_dict(record["dsg"]).boxes) == 5
    assert main([*argv, "--label", "car"]) == 1  # no track fits any object: nothing to write
    assert "wrote 0 DSGs" in capsys.readouterr().err
