"""staged_dir: a folder appears whole or not at all."""

from __future__ import annotations

import pytest

from dysen.atomic import staged_dir


def test_success_replaces_the_folder_and_failure_leaves_it_untouched(tmp_path):
    target = tmp_path / "model"
    with staged_dir(target) as staging:
        (staging / "a.txt").write_text("first")
    with pytest.raises(RuntimeError):
        with staged_dir(target) as staging:
            (staging / "a.txt").write_text("half-written")
            raise RuntimeError("interrupted")
    assert (target / "a.txt").read_text() == "first"
    with staged_dir(target) as staging:
        (staging / "b.txt").write_text("second")
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no staging or trash folders left behind
