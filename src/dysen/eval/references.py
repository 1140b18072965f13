"""The published evaluation protocols dysen reproduces (``dysen eval --reference NAME``), each with every setting
it fixes, so a number can be set beside the paper's.

* ``lvdm-ucf101`` — LVDM's FVD/KVD (``scripts/eval_cal_fvd_kvd.py`` and ``shellscripts/eval_lvdm_short.sh``):
  2,048 generated clips, sampled with DDIM at η = 1.0 (its sampling scripts' default); each of 10 runs draws 2,048
  real training clips anew (a shuffled loader) against the same generated set; FVD and KVD (the unbiased
  polynomial-kernel MMD² over all samples) from the I3D logits of the TATS port (``i3d_pretrained_400.pt``,
  BatchNorm eps 1e-5); mean ± population std over the runs.
* ``tganv2-ucf101-is`` — TGANv2's Inception Score (Saito et al. 2020, used by LVDM and Dysen-VDM): 2,048 generated
  clips scored by the UCF-101 C3D in one split, repeated over 10 fresh sample sets; mean ± population std.
* ``stylegan-v-ucf101-fvd`` — StyleGAN-V's ``fvd2048_16f``: 2,048 generated and 2,048 real clips of 16 frames, the
  TorchScript I3D (``i3d_torchscript.pt``) called as StyleGAN-V calls it, on uint8 videos at their own size with
  the network's own rescaling and resizing on (``rescale=True, resize=True, return_features=True``); one run.

A reference fixes these settings; a flag that would change one of them is refused (``ReferenceProtocolError``), and the
report records the reference's name and every setting.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from dysen.errors import DysenError

I3DCall = Literal["tats", "stylegan-v"]
"""How the I3D is fed: "tats", frames resized to 224 by dysen and scaled to [-1, 1] (TATS / LVDM / Dysen; a
TorchScript file is then called with its own rescaling and resizing off); "stylegan-v", uint8 frames at their own
size, the TorchScript network rescaling and resizing them itself."""


class ReferenceProtocolError(DysenError):
    """A reference protocol that does not exist, or a flag that would change a setting it fixes."""


@dataclass(frozen=True)
class ReferenceProtocol:
    """One published protocol: what it generates, compares and repeats."""

    name: str
    protocol: Literal["ucf101", "msrvtt"]
    metrics: tuple[str, ...]
    num: int
    """Generated clips per run."""
    num_real: int | None
    """Real clips per run (None: no real clips are needed)."""
    runs: int
    """Repetitions; the report gives each metric's mean and population std over them."""
    redraw: Literal["real", "generated"]
    """What each run draws anew: the real clips (LVDM: one generated set) or the generated ones (TGANv2)."""
    eta: float | None = None
    """DDIM η the reference samples with (None: the model's own)."""
    is_splits: int = 1
    i3d_call: I3DCall = "tats"
    i3d_bn_eps: float = 1e-5
    source: str = ""

    def settings(self) -> dict[str, Any]:
        """Every setting, for the report."""
        return dataclasses.asdict(self)


REFERENCES: dict[str, ReferenceProtocol] = {
    reference.name: reference
    for reference in (
        ReferenceProtocol(
            "lvdm-ucf101", "ucf101", ("fvd", "kvd"), num=2048, num_real=2048, runs=10, redraw="real", eta=1.0,
            source="LVDM scripts/eval_cal_fvd_kvd.py (--n_sample 2048 --n_runs 10), shellscripts/eval_lvdm_short.sh",
        ),
        ReferenceProtocol(
            "tganv2-ucf101-is", "ucf101", ("is",), num=2048, num_real=None, runs=10, redraw="generated",
            source="TGANv2 (Saito et al. 2020): IS of the UCF-101 C3D, 2,048 samples, one split, 10 sample sets",
        ),
        ReferenceProtocol(
            "stylegan-v-ucf101-fvd", "ucf101", ("fvd",), num=2048, num_real=2048, runs=1, redraw="real",
            i3d_call="stylegan-v",
            source="StyleGAN-V src/metrics/frechet_video_distance.py (fvd2048_16f, detector rescale/resize on)",
        ),
    )
}  # fmt: skip
"""The references by name."""


def reference_protocol(name: str) -> ReferenceProtocol:
    """The reference called ``name``; ``ReferenceProtocolError`` naming the known ones otherwise."""
    if name not in REFERENCES:
        raise ReferenceProtocolError(f"unknown reference protocol {name!r}; choose one of {', '.join(REFERENCES)}")
    return REFERENCES[name]
