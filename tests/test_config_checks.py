"""The whole-model config checks of ``DysenVDMConfig`` that span two components."""

from __future__ import annotations

from pathlib import Path

import pytest

from dysen.config import PRESETS, ConfigError, load_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_unet_layout_without_rgtrm_layout_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("unet: {layout: true}\nrgtrm: {layout: false}\n")
    with pytest.raises(ConfigError, match="unet.layout needs rgtrm.layout"):
        load_config(path)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_and_its_yaml_pass_the_checks(name: str) -> None:
    assert load_config(CONFIGS / f"{name}.yaml") == load_config(name)
