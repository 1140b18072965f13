"""How far apart the dynamics scorer keeps candidate new colours of the Dynamic Shapes world (issue 23).

The scorer (``dysen.eval.tracking``) gives a blob the world colour nearest in *chroma hue* (Cb, Cr of the
offset from the background), and rejects a blob whose hue is more than ``HUE_TOLERANCE_DEG`` from every
world colour. So a new colour is only readable if its hue stays >= ~25 degrees from all others after H.264.
This paints a 24x24 patch of each colour (world and candidate) on ``vocab.BACKGROUND`` in a 64x64, 8-frame
clip, round-trips it through H.264 (``write_video`` / ``read_video``, crf 18, yuv420p), and reports for each
candidate: its chroma magnitude (an achromatic colour has none, so no hue), its decoded hue, the hue distance
to the nearest world colour and to the nearest other candidate, and what the scorer reads today.

Run: ``python benchmarks/colour_separation.py`` (about a second). Measured (issue 23; world hues after H.264:
red 109, orange 141, yellow 165, green 238, blue 336, purple 30 degrees)::

    candidate chroma  luma   hue  nearest world (deg)   nearest candidate (deg)  scorer reads  distinct?
    white        0.0   215     -  (no hue)                                       nothing      no
    pink        57.8   149    80  red        28          brown      55          nothing      yes
    cyan        97.9   132   291  blue       45          pink      149          nothing      yes
    brown       46.6    68   135  orange      6          pink       55          orange       no
    grey         0.0   104     -  (no hue)                                       nothing      no

So by hue only pink and cyan would stay distinct (pink just: 28 degrees from red); brown is a dark orange
(same hue, 6 degrees) and white / grey have no chroma at all, so the scorer could tell them apart only by a
luma rule it does not have (white's luma offset 215 is above the world's 68-176, grey's 104 within it).
A retrain that adds colours should add pink and cyan; white, grey and brown need the scorer to read
luma (lightness) too.

The shipped autoencoder cannot carry the new colours (``--autoencoder src/dysen/weights/shapes-tiny/vae``, the
mean of a disc's interior after encode and decode): the six come back within 7 levels, but pink (255, 130, 190)
decodes as (225, 222, 59), a yellow, and cyan (30, 210, 220) as (137, 65, 223), a purple. Trained on six colours
only, it spends its 4 latent channels on them; a model that draws pink and cyan needs an autoencoder trained on
them (``dysen train-vae --world-colours ...``) and a VDM trained on its latents.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np

from dysen.data.video import read_video, write_video
from dysen.eval import tracking
from dysen.world import vocab

CANDIDATES: dict[str, tuple[int, int, int]] = {
    # candidate RGB a renderer could paint (CSS/X11 values, pink and brown a little more saturated)
    "white": (240, 240, 240),
    "pink": (255, 130, 190),
    "cyan": (30, 210, 220),
    "brown": (140, 80, 35),
    "grey": (128, 128, 128),
}
MIN_CHROMA = 20.0
"""Least chroma magnitude (Cb, Cr levels) for a hue to be readable after H.264 (the world's least is ~95)."""


def _decoded_chroma(colours: dict[str, tuple[int, int, int]]) -> dict[str, tuple[np.ndarray, float]]:
    """Mean (Cb, Cr) offset from the background and mean luma offset of each colour's patch after H.264."""
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, rgb in colours.items():
            frames = np.empty((8, 64, 64, 3), dtype=np.uint8)
            frames[:] = vocab.BACKGROUND
            frames[:, 20:44, 20:44] = rgb
            path = write_video(Path(tmp) / f"{name}.mp4", frames)
            back = read_video(path).numpy().astype(np.float32)[:, 24:40, 24:40].reshape(-1, 3)  # the patch's interior
            offset = back.mean(axis=0) - np.array(vocab.BACKGROUND, dtype=np.float32)
            out[name] = (offset @ tracking._CHROMA.T, float(offset @ tracking._LUMA))
    return out


def _hue(chroma: np.ndarray) -> float:
    return math.degrees(math.atan2(float(chroma[1]), float(chroma[0]))) % 360


def _apart(a: float, b: float) -> float:
    d = abs(a - b) % 360
    return min(d, 360 - d)


def autoencoder_round_trip(folder: str) -> dict[str, tuple[int, int, int]]:
    """The mean colour of a disc of each paint (``vocab.PAINTS``) after an autoencoder's encode and decode."""
    import torch

    from dysen.models.frames import frames_to_model, model_to_frames
    from dysen.models.vae import KLVideoAutoencoder

    vae = KLVideoAutoencoder.from_pretrained(folder).eval()
    yy, xx = np.mgrid[:64, :64]
    disc, core = (yy - 32) ** 2 + (xx - 32) ** 2 < 100, (yy - 32) ** 2 + (xx - 32) ** 2 < 49
    out = {}
    for name, rgb in vocab.PAINTS.items():
        frames = np.empty((16, 64, 64, 3), dtype=np.uint8)
        frames[:] = vocab.BACKGROUND
        frames[:, disc] = rgb
        with torch.no_grad():
            video = vae.decode(vae.encode(frames_to_model(torch.from_numpy(frames))[None]))[0]
        back = model_to_frames(video).numpy()[:, core].reshape(-1, 3).astype(np.float64).mean(axis=0)
        out[name] = tuple(int(round(v)) for v in back)
    return out


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--autoencoder", metavar="DIR", help="also round-trip every paint through this autoencoder")
    args = parser.parse_args()
    if args.autoencoder:
        print(f"through the autoencoder {args.autoencoder}:")
        for name, back in autoencoder_round_trip(args.autoencoder).items():
            print(f"  {name:7} painted {vocab.PAINTS[name]} decoded {back}")
    decoded = _decoded_chroma({**vocab.COLOURS, **CANDIDATES})
    hue = {name: _hue(c) for name, (c, _) in decoded.items()}
    print("world colours after H.264: " + ", ".join(f"{n} {hue[n]:.0f} deg" for n in vocab.COLOURS))
    print(f"{'candidate':9} {'chroma':>6} {'luma':>5} {'hue':>5}  nearest world (deg)   nearest candidate (deg)  "
          f"scorer reads  distinct?")
    for name in CANDIDATES:
        chroma, luma = decoded[name]
        magnitude = float(np.linalg.norm(chroma))
        world = min(vocab.COLOURS, key=lambda w: _apart(hue[name], hue[w]))
        other = min((c for c in CANDIDATES if c != name and np.linalg.norm(decoded[c][0]) >= MIN_CHROMA),
                    key=lambda c: _apart(hue[name], hue[c]), default=None)  # fmt: skip
        paints = tracking.palette()
        reads = paints.names[int(tracking._nearest_colour(chroma[None].astype(np.float32), paints.direction)[0])]
        within = _apart(hue[name], hue[reads]) <= tracking.HUE_TOLERANCE_DEG
        distinct = (
            magnitude >= MIN_CHROMA
            and _apart(hue[name], hue[world]) >= 25
            and (other is None or _apart(hue[name], hue[other]) >= 25)
        )
        if magnitude < MIN_CHROMA:  # no hue to compare
            reading = reads if within else "nothing"
            print(f"{name:9} {magnitude:6.1f} {luma:5.0f} {'-':>5}  (no hue){'':39}{reading:12} no")
            continue
        print(f"{name:9} {magnitude:6.1f} {luma:5.0f} {hue[name]:5.0f}  {world:7} {_apart(hue[name], hue[world]):5.0f}"
              f"          {other or '-':7} {_apart(hue[name], hue[other]) if other else float('nan'):5.0f}"
              f"          {reads if within else 'nothing':12} {'yes' if distinct else 'no'}")


if __name__ == "__main__":
    main()
