"""``dysen eval --backbone``: a tiny random Wan scored on the Dynamic Shapes captions, a row per control strength,
mixed with other rows in one report; clear errors for folders and sizes a backbone cannot take."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from backbone_fixtures import save_wan
from dysen.backbones.base import BackboneDefaults, BackboneGeometry
from dysen.cli import main
from dysen.eval.backbone_rows import row_name, scaled_for_scoring

SMALL = ["--height", "32", "--width", "32", "--num", "2", "--steps", "2", "--seed", "3", "--no-progress"]


@pytest.fixture(scope="module")
def wan_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_wan(tmp_path_factory.mktemp("eval-backbone") / "wan")


def _report(folder: Path) -> dict:
    return json.loads((folder / "report.json").read_text())


def _without_time(clips: list[dict]) -> list[dict]:
    return [{k: v for k, v in clip.items() if k != "seconds"} for clip in clips]


def test_a_row_per_strength_with_the_control_settings_and_strength_zero_is_the_backbone_alone(
    wan_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "steered"
    argv = ["eval", "--backbone", f"wan={wan_folder}", "--control-strength", "0,3", "--control-steps", "1", *SMALL]
    assert main([*argv, "--real", "--out", str(out)]) == 0
    report = _report(out)
    truth, alone, steered = report["rows"]  # mixed with the other rows of the command
    assert truth["name"] == "ground truth (renders)"
    assert [alone["name"], steered["name"]] == ["wan", "wan + DSG control s=3"]
    assert "--backbone wan=" in report["command"] and "--control-strength 0,3 --control-steps 1.0" in report["command"]
    files = sorted(wan_folder.rglob("*.safetensors"))
    hashes = {str(f.relative_to(wan_folder)): hashlib.sha256(f.read_bytes()).hexdigest() for f in files}
    for row, strength in ((alone, 0.0), (steered, 3.0)):
        assert row["source"] == "backbone" and row["weights"] == hashes and str(wan_folder) in row["model"]
        assert row["control"]["strength"] == strength and row["control"]["steps"] == 1.0
        assert row["frames"] == 17 and row["benchmark_frames"] == 16 and row["resolution"] == [32, 32]
        assert row["sampling"]["steps"] == 2 and row["seeds"] == [3, 4] and row["num_samples"] == 2
        assert set(row["summary"]["overall"]) >= {"action_accuracy", "action_accuracy_se", "object_fidelity_se"}
    assert alone["planner"] is None and alone["control"]["steered_steps"] == 0
    assert alone["sampling"]["plan"] == "none (uncontrolled)" and "planned_events" not in alone["clips"][0]
    assert steered["planner"]["backend"] == "rules" and steered["control"]["steered_steps"] == 2
    assert steered["clips"][0]["planned_events"]  # it followed a plan of the caption
    assert "wan + DSG control s=3: action_accuracy" in capsys.readouterr().out

    plain = tmp_path / "plain"
    assert main(["eval", "--backbone", str(wan_folder), *SMALL, "--out", str(plain), "--save-videos"]) == 0
    (row,) = _report(plain)["rows"]
    assert row["name"] == "wan" and row["control"]["strength"] == 0.0
    assert _without_time(row["clips"]) == _without_time(alone["clips"])  # the same videos, the same scores
    saved = Path(row["videos"])
    assert sorted(p.name for p in saved.iterdir()) == ["gold.jsonl", *(f"{c['id']}.mp4" for c in row["clips"])]
    again = tmp_path / "again"
    assert main(["eval", "--videos", f"again={saved}", "--no-progress", "--out", str(again)]) == 0
    assert _without_time(_report(again)["rows"][0]["clips"])[0]["num_events"] == row["clips"][0]["num_events"]


def test_a_folder_that_is_no_supported_backbone_names_what_it_found(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "sd"
    folder.mkdir()
    index = {"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"]}
    (folder / "model_index.json").write_text(json.dumps(index))
    assert main(["eval", "--backbone", str(folder), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "describes a StableDiffusionPipeline (components: unet=UNet2DConditionModel)" in err
    assert "WanPipeline and TextToVideoSDPipeline" in err and "Traceback" not in err
    assert main(["eval", "--backbone", str(tmp_path), "--out", str(tmp_path / "out")]) == 1
    assert "has no model_index.json" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # refused before any row ran


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--height", "40"], "height must be a positive multiple of 16 for the wan backbone"),
        (["--control-strength", "1", "--ablation"], "no --backbone"),
        (["--protocol", "msrvtt", "--data", "."], "only for --protocol shapes"),
        (["--prompts", "p.jsonl"], "does not go with --backbone"),
    ],
)
def test_backbone_errors_are_one_clear_line(
    wan_folder: Path, args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["eval", "--backbone", str(wan_folder), *args, "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("dysen: error:") and message in err and "Traceback" not in err


def test_backbone_flags_need_a_backbone(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "--control-strength", "2", "--width", "32", "--out", str(tmp_path)]) == 1
    assert "--control-strength, --width: only with --backbone DIR" in capsys.readouterr().err


def test_frames_a_backbone_takes_and_row_names() -> None:
    defaults = BackboneDefaults(height=32, width=32, num_frames=17, fps=16, steps=2, guidance=5.0)
    wan = BackboneGeometry("wan", 4, 8, 4, (2, 2), defaults)
    per_frame = BackboneGeometry("unet3d", 4, 8, 1, (1, 1), defaults)
    assert [wan.frames_at_least(n) for n in (1, 2, 16, 17, 18)] == [1, 5, 17, 17, 21]
    assert per_frame.frames_at_least(16) == 16
    assert row_name("wan", 0.0) == "wan" and row_name("wan", 2.5) == "wan + DSG control s=2.5"
    assert row_name("wan", 2.0, 8.0) == "wan + DSG control s=2, self-attention mask m=8"
    assert row_name("wan", 0.0, 8.0) == "wan + self-attention mask m=8"
    assert row_name("wan", 2.0, 0.0, 0.5) == "wan + DSG control s=2, energy η=0.5"
    assert row_name("wan", 2.0, adapter=True) == "wan + DSG control s=2 + adapter"
    assert row_name("wan", 0.0, adapter=True) == "wan + adapter"


def test_self_attention_masking_rows_cross_the_strengths(
    wan_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "masked"
    argv = ["eval", "--backbone", f"wan={wan_folder}", "--control-strength", "0,3", "--control-self", "0,6"]
    argv += SMALL
    assert main([*argv, "--num", "1", "--out", str(out)]) == 0
    rows = _report(out)["rows"]
    assert [row["name"] for row in rows] == [
        "wan", "wan + self-attention mask m=6", "wan + DSG control s=3",
        "wan + DSG control s=3, self-attention mask m=6",
    ]  # fmt: skip
    assert [(row["control"]["strength"], row["control"]["self_strength"]) for row in rows] == [
        (0, 0), (0, 6), (3, 0), (3, 6)
    ]  # fmt: skip
    assert rows[0]["planner"] is None and all(row["planner"] for row in rows[1:])  # masking alone plans too
    energy = tmp_path / "energy"
    argv = ["eval", "--backbone", f"wan={wan_folder}", "--control-energy", "0,0.5", *SMALL, "--num", "1"]
    assert main([*argv, "--out", str(energy)]) == 0
    rows = _report(energy)["rows"]
    assert [row["name"] for row in rows] == ["wan", "wan + energy η=0.5"]
    assert rows[1]["control"]["energy"] == 0.5 and rows[1]["planner"] and rows[1]["control"]["steered_steps"] == 1
    assert main(["eval", "--control-self", "2", "--out", str(tmp_path / "x")]) == 1
    assert "--control-self: only with --backbone DIR" in capsys.readouterr().err


def test_large_frames_are_scaled_within_the_scoring_budget() -> None:
    frames = np.zeros((17, 480, 832, 3), dtype=np.uint8)
    frames[:, 100:200, 300:400] = 255
    scaled = scaled_for_scoring(frames)
    assert scaled.shape[0] == 17 and scaled.shape[1] < 480
    assert abs(scaled.shape[2] / scaled.shape[1] - 832 / 480) < 0.02  # the aspect kept
    small = np.zeros((16, 64, 64, 3), dtype=np.uint8)
    assert scaled_for_scoring(small) is small


def test_the_rows_of_one_backbone_load_it_once_and_a_changed_folder_again(
    wan_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dysen.backbones.folder as folder_module

    loads: list[Path] = []
    real_load = folder_module.load_backbone

    def counting_load(folder, options=None):  # noqa: ANN001, ANN202 - the real signature
        loads.append(Path(folder))
        return real_load(folder, options)

    monkeypatch.setattr(folder_module, "load_backbone", counting_load)
    copy = tmp_path / "wan"
    shutil.copytree(wan_folder, copy)
    argv = ["eval", "--backbone", str(copy), "--control-strength", "0,2,4", *SMALL, "--num", "1"]
    assert main([*argv, "--out", str(tmp_path / "a")]) == 0
    assert loads == [copy.resolve()]  # three rows, one load
    weights = sorted(copy.rglob("*.safetensors"))[0]
    weights.write_bytes(weights.read_bytes())  # rewritten: a new modification time
    assert main([*argv, "--out", str(tmp_path / "b")]) == 0
    assert loads == [copy.resolve()] * 2
