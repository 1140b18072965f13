"""A run folder's saved settings (``dysen.run_folder``): what the training loop, train-vae, the RL selector and
the latent cache share to refuse a resume that would change a run's course."""

from __future__ import annotations

from pathlib import Path

from dysen.run_folder import as_saved, changed_settings, read_settings, resume_changes, write_settings


def test_saved_settings_read_back_as_json_and_a_resume_sees_only_the_changes_that_matter(tmp_path: Path) -> None:
    settings = as_saved({"lr": 1e-4, "betas": (0.9, 0.999), "lpips": tmp_path / "vgg.pth", "steps": 10})
    assert settings["betas"] == [0.9, 0.999] and settings["lpips"] == str(tmp_path / "vgg.pth")
    path = tmp_path / "run" / "settings.json"
    write_settings(path, settings)
    assert read_settings(path) == settings and path.read_text(encoding="utf-8").endswith("}\n")

    longer = {**settings, "steps": 20}
    assert resume_changes(path, longer, resume=True, resumable={"steps"}) == ([], settings)
    changed, saved = resume_changes(path, {**longer, "lr": 2e-4, "seed": 1}, resume=True, resumable={"steps"})
    assert changed == ["lr", "seed"] and saved == settings  # a setting the saved run lacks counts as changed
    assert resume_changes(path, {"lr": 2e-4}, resume=False) == ([], {})  # a fresh run checks nothing
    assert resume_changes(tmp_path / "none.json", {"lr": 2e-4}, resume=True) == ([], {})  # nothing saved
    assert changed_settings({"a": 1, "b": 2}, {"a": 1, "b": 3}) == ["b"]
