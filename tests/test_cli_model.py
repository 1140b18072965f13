"""``dysen model show`` / ``set-defaults``, and the deprecated planner spellings that still work."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from dysen.cli import build_parser, main
from dysen.errors import DysenError
from dysen.pipeline import SAMPLING_FIELDS, SHIPPED_MODELS, read_pipeline_config, set_sampling_defaults


@pytest.fixture
def model(tmp_path: Path) -> Path:
    """A copy of the shipped model's folder (its config only: nothing here loads weights)."""
    folder = tmp_path / "model"
    shutil.copytree(SHIPPED_MODELS["shapes-tiny"], folder)
    return folder


def test_set_defaults_changes_what_the_model_samples_with_and_nothing_else(model: Path, capsys) -> None:
    before = json.loads((model / "model_index.json").read_text())
    argv = ["model", "set-defaults", str(model), "--steps", "30", "--guidance", "3.5", "--dsg-guidance", "5"]
    assert main([*argv, "--eta", "0.5", "--sampler", "euler"]) == 0
    out = capsys.readouterr().out
    assert "steps: 25 -> 30" in out and "guidance: 4 -> 3.5" in out and "dsg_guidance: none -> 5" in out
    diffusion = read_pipeline_config(model).diffusion
    assert (diffusion.steps, diffusion.guidance, diffusion.dsg_guidance) == (30, 3.5, 5.0)
    assert (diffusion.eta, diffusion.sampler) == (0.5, "euler")
    after = json.loads((model / "model_index.json").read_text())
    changed = {"steps", "guidance", "dsg_guidance", "eta", "sampler"}
    assert {k: v for k, v in after["config"]["diffusion"].items() if k not in changed} == {
        k: v for k, v in before["config"]["diffusion"].items() if k not in changed
    }
    assert {k: v for k, v in after["config"].items() if k != "diffusion"} == {
        k: v for k, v in before["config"].items() if k != "diffusion"
    }  # the planner's policy stays "policy", inside the folder
    assert main(["model", "set-defaults", str(model), "--dsg-guidance", "none"]) == 0
    assert read_pipeline_config(model).diffusion.dsg_guidance is None
    assert "steps: 30 -> 30 (unchanged)" in capsys.readouterr().out


def test_generate_uses_the_new_defaults(model: Path, tmp_path: Path) -> None:
    from dysen.pipeline import load_pipeline

    set_sampling_defaults(model, {"steps": 2, "guidance": 1.5})
    pipe = load_pipeline(model)
    assert (pipe.config.diffusion.steps, pipe.config.diffusion.guidance) == (2, 1.5)


@pytest.mark.parametrize(
    "flags,match",
    [
        (["--steps", "0"], r"invalid DiffusionConfig \['steps'\]"),
        (["--eta", "2"], r"invalid DiffusionConfig \['eta'\]"),
        (["--guidance", "-1"], r"invalid DiffusionConfig \['guidance'\]"),
        (["--dsg-guidance", "-0.5"], r"invalid DiffusionConfig \['dsg_guidance'\]"),
        ([], "nothing to change"),
    ],
)
def test_bad_values_are_refused_and_leave_the_file_untouched(model: Path, flags, match, capsys) -> None:
    index = (model / "model_index.json").read_bytes()
    assert main(["model", "set-defaults", str(model), *flags]) == 1
    err = capsys.readouterr().err
    assert err.startswith("dysen: error:")
    args = build_parser().parse_args(["model", "set-defaults", str(model), *flags])
    with pytest.raises(DysenError, match=match):
        set_sampling_defaults(model, {name: getattr(args, name) for name in SAMPLING_FIELDS})
    with pytest.raises(DysenError, match="expected int"):
        set_sampling_defaults(model, {"steps": "many"})
    assert (model / "model_index.json").read_bytes() == index
    assert [p.name for p in model.iterdir() if p.name.startswith(".")] == []  # no temporary file left


def test_bad_choices_and_folders_are_refused(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["model", "set-defaults", str(tmp_path), "--sampler", "heun"])
    with pytest.raises(SystemExit):
        build_parser().parse_args(["model", "set-defaults", str(tmp_path), "--dsg-guidance", "lots"])
    assert main(["model", "set-defaults", str(tmp_path), "--steps", "3"]) == 1
    assert "model_index.json is missing" in capsys.readouterr().err
    assert main(["model", "show", str(tmp_path)]) == 1


def test_the_shipped_models_are_refused_without_allow_shipped(capsys) -> None:
    shipped = SHIPPED_MODELS["shapes-tiny"]
    index = (shipped / "model_index.json").read_bytes()
    assert main(["model", "set-defaults", str(shipped), "--steps", "9"]) == 1
    assert "shipped inside the dysen package: copy it" in capsys.readouterr().err
    assert (shipped / "model_index.json").read_bytes() == index


def test_show_prints_the_sampling_defaults(model: Path, capsys) -> None:
    assert main(["model", "show", str(model)]) == 0
    out = capsys.readouterr().out
    assert "sampling defaults: sampler ddim, steps 25, guidance 4, dsg_guidance unset (= guidance, 4), eta 0" in out
    assert "video: 16 frames, 64x64, 8 fps" in out and "planner: rules" in out
    assert main(["model", "show", str(model), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["diffusion"]["steps"] == 25


# -- the planner flags: one spelling, old ones deprecated -------------------------------------------


@pytest.mark.parametrize("command", [["plan", "x"], ["train-dysen", "--out", "o"]])
def test_old_planner_spellings_still_work_with_a_warning(command: list[str], capsys) -> None:
    args = build_parser().parse_args([*command, "--backend", "openai", "--model", "m"])
    assert (args.planner, args.planner_model) == ("openai", "m")
    err = capsys.readouterr().err
    assert "--backend is deprecated" in err and "use --planner" in err and "use --planner-model" in err
    new = build_parser().parse_args([*command, "--planner", "openai", "--planner-model", "m"])
    assert (new.planner, new.planner_model) == ("openai", "m") and capsys.readouterr().err == ""


def test_annotates_old_model_flag_is_the_vlm_or_the_planners_llm(capsys) -> None:
    base = ["dsg", "annotate", "--dataset", "folder", "--root", "r", "--out", "o"]
    args = build_parser().parse_args([*base, "--model", "m", "--backend", "rules"])
    assert (args.legacy_model, args.planner) == ("m", "rules")
    assert "--model is deprecated" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["plan", "generate", "eval", "demo", "train-dysen", "dsg annotate"])
def test_every_subcommand_spells_the_planner_flags_alike(name: str) -> None:
    from test_cli_defaults import PARSERS

    flags = {s for a in PARSERS[name]._actions if a.help != "==SUPPRESS==" for s in a.option_strings}
    assert {"--planner-model", "--base-url", "--api-key-env"} <= flags or name == "demo" and {
        "--planner-model", "--base-url", "--api-key-env", "--demos", "--policy"} <= flags  # fmt: skip
    assert "--backend" not in flags  # only as a hidden deprecated alias
    if name not in ("demo",):
        assert "--planner" in flags


def test_annotate_runs_with_the_old_spellings_and_asks_vlm_mode_for_its_model(tmp_path: Path, capsys) -> None:
    root = tmp_path / "videos"
    root.mkdir()
    (root / "clip.mp4").write_bytes(b"not decoded in captions mode")
    (root / "clip.txt").write_text("a red circle moves right")
    base = ["dsg", "annotate", "--dataset", "folder", "--root", str(root)]
    assert main([*base, "--out", str(tmp_path / "a.jsonl"), "--backend", "rules", "--mode", "captions"]) == 0
    assert json.loads((tmp_path / "a.jsonl").read_text())["source"] == "captions:rules"
    assert "--backend is deprecated" in capsys.readouterr().err
    assert main([*base, "--out", str(tmp_path / "b.jsonl"), "--mode", "vlm"]) == 1
    assert "--mode vlm needs --vlm-model" in capsys.readouterr().err
