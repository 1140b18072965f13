"""staged_dir: a folder appears whole or not at all, with the permissions of a plain mkdir."""

from __future__ import annotations

import os
import stat

import pytest
import torch
from safetensors.torch import save_file

from dysen.atomic import staged_dir, staged_file, write_text_atomic


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


def test_what_is_written_gets_the_permissions_of_a_plain_open_not_tempfiles_private_ones(tmp_path):
    umask = os.umask(0o022)
    os.umask(umask)
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain.txt").write_text("x")
    write_text_atomic(tmp_path / "plan.json", "{}")
    with staged_dir(tmp_path / "model") as staging:
        (staging / "unet").mkdir()
        save_file({"w": torch.zeros(2)}, staging / "unet" / "model.safetensors")  # safetensors writes 0600

    def mode(name: str) -> int:
        return stat.S_IMODE((tmp_path / name).stat().st_mode)

    assert mode("plan.json") == mode("plain.txt") == 0o666 & ~umask
    assert mode("model") == mode("model/unet") == mode("plain") == 0o777 & ~umask
    assert mode("model/unet/model.safetensors") == 0o666 & ~umask


def test_a_staged_file_keeps_the_suffix_and_a_failed_write_leaves_the_old_file(tmp_path):
    target = tmp_path / "plan.png"
    target.write_bytes(b"old")
    with staged_file(target) as temp:
        assert temp.suffix == ".png" and temp.parent == tmp_path  # writers that read the format from the name
        temp.write_bytes(b"new")
    assert target.read_bytes() == b"new"
    with pytest.raises(RuntimeError), staged_file(target) as temp:
        temp.write_bytes(b"half")
        raise RuntimeError("interrupted")
    assert target.read_bytes() == b"new" and sorted(p.name for p in tmp_path.iterdir()) == ["plan.png"]
