"""The trained ``shapes-tiny`` inside the package: present, small, documented, loaded by default, and working;
and its text-only ablation beside it, for ``dysen eval --ablation``.

Each model card (``weights/<name>/README.md``) lists each weight file's SHA-256; the test holds the card
to the files, so retrained weights cannot ship with an old card. The quality check generates a few Dynamic
Shapes test captions (never seen in training) with the model's own defaults and scores them with the
dynamics scorer: random or broken weights draw no objects and fail it.
"""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path

import numpy as np
import pytest

from dysen.data.shapes import ShapesConfig, sample_clip
from dysen.eval.dynamics import score_video
from dysen.pipeline import SHIPPED_MODELS, DysenVDMPipeline, load_pipeline, read_pipeline_config, shipped_model
from dysen.planner.rl import PolicySelector
from dysen.planner.rules import RulesPlanner
from dysen.world import vocab

FOLDER = SHIPPED_MODELS["shapes-tiny"]
TEXT_ONLY = SHIPPED_MODELS["shapes-tiny-text-only"]
MAX_BYTES = 30 * 2**20  # the budget for the weights shipped inside the package
MIN_FIDELITY, MIN_ACCURACY = 0.5, 0.6  # measured on these 4 captions: 0.92 and 0.83 (fifth release; model card)


def test_shapes_tiny_and_its_text_only_ablation_ship_inside_the_package_under_30_mb() -> None:
    assert shipped_model("shapes-tiny") == FOLDER and shipped_model("shapes-tiny-text-only") == TEXT_ONLY
    files = sorted(FOLDER.rglob("*.safetensors"))
    assert {f.parent.name for f in files} == {"unet", "rgtrm", "vae", "policy"}
    text_only = sorted(TEXT_ONLY.rglob("*.safetensors"))
    assert {f.parent.name for f in text_only} == {"unet", "rgtrm", "vae"}
    assert sum(f.stat().st_size for f in files + text_only) <= MAX_BYTES
    for folder in (FOLDER, TEXT_ONLY):
        assert not list(folder.rglob("*.bin")) and not list(folder.rglob("*.pt"))
    vae = Path("vae") / "model.safetensors"
    assert (TEXT_ONLY / vae).read_bytes() == (FOLDER / vae).read_bytes()  # one autoencoder, one ceiling
    config = read_pipeline_config(TEXT_ONLY)  # the same backbone without the DSG path
    assert (config.unet.dsg_cross_attention, config.unet.layout) == ("off", False)
    assert config.diffusion == read_pipeline_config(FOLDER).diffusion


@pytest.mark.parametrize(
    "folder, words",
    [
        (FOLDER, ("dysen train-vae", "dysen train-vdm", "dysen train-dysen", "dysen finetune", "text-only", "layout")),
        (TEXT_ONLY, ("dysen train-vdm", "dysen finetune", "--config shapes-tiny-text-only", "shapes-tiny")),
    ],
)
def test_the_model_cards_name_every_weight_file_by_its_sha256(folder, words) -> None:
    card = (folder / "README.md").read_text()
    listed = dict(re.findall(r"`([\w/]+\.safetensors)` \| `([0-9a-f]{64})`", card))
    files = {str(f.relative_to(folder)): f for f in folder.rglob("*.safetensors")}
    assert set(listed) == set(files)
    for name, path in files.items():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == listed[name], f"{name} changed; update the card"
    for needed in (*words, "wall", "action accuracy"):
        assert needed in card.lower()


def test_generate_uses_the_shipped_model_without_the_random_weights_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        pipe = load_pipeline()
    assert "random" not in caplog.text
    assert pipe.config == DysenVDMPipeline.from_pretrained(FOLDER).config
    assert pipe.config.planner.policy == FOLDER / "policy"  # stage 3's RL selector ships with the model
    assert isinstance(pipe.planner, RulesPlanner) and isinstance(pipe.planner.selector, PolicySelector)


@pytest.fixture(scope="module")
def shipped() -> DysenVDMPipeline:
    return load_pipeline()


@pytest.mark.slow
def test_the_shipped_model_draws_the_captioned_objects_and_actions(shipped: DysenVDMPipeline) -> None:
    """Four test captions, planned by the default planner, at the model's default guidance and steps: the
    scorer must find the captioned objects and actions (against the gold DSG)."""
    assert (shipped.config.diffusion.guidance, shipped.config.diffusion.steps) == (4.0, 25)  # the card's settings
    config = ShapesConfig()
    fidelity, accuracy = [], []
    for index in range(4):
        clip = sample_clip(index, "test", 0, config)
        video = shipped(clip.caption, seed=index, progress=False)
        score = score_video(video.frames, clip.dsg)
        fidelity.append(score.object_fidelity)
        accuracy.append(score.action_accuracy)
    print(f"shipped shapes-tiny on 4 test captions: object fidelity {fidelity}, action accuracy {accuracy}")
    assert np.mean(fidelity) >= MIN_FIDELITY and np.mean(accuracy) >= MIN_ACCURACY


@pytest.mark.slow
@pytest.mark.parametrize(
    "prompt, action",
    [
        ("the green square slides to the left", "move_left"),  # issue 23's wordings, which once left the shape still
        ("a red star drifts upward", "move_up"),
        ("the blue circle falls down", "move_down"),
    ],
)
def test_the_shipped_model_moves_the_shape_for_a_paraphrased_verb(
    shipped: DysenVDMPipeline, prompt: str, action: str
) -> None:
    """The plan keeps the verb as written and gains its canonical motion; the layout moves the box, the model
    draws the move, and the scorer (reading the motion) sees it in at least 2 of seeds 0-2. The fifth release drew
    the move at 13 of the 15 seeds 0-4 of these prompts, missing seed 0 of the last two."""
    drawn = 0
    for seed in range(3):
        video = shipped(prompt, seed=seed, progress=False)
        (event,) = video.dsg.events
        assert event.motion is not None and event.motion.action == action
        assert event.predicate not in {a.predicate for a in vocab.ACTIONS}  # not rewritten into the gold wording
        score = score_video(video.frames, video.dsg)
        assert score.object_fidelity == 1.0, f"seed {seed}: the {event.agent} was not drawn"
        drawn += score.action_accuracy == 1.0
    assert drawn >= 2, f"the move was drawn at {drawn} of seeds 0-2"
