"""Argparse ``type=`` converters shared by every subcommand: bad values stop at the edge with argparse's one-line
usage error (exit 2) instead of a traceback deep inside (issue 22, item 16).

Each converter raises ``argparse.ArgumentTypeError`` with what was wrong; argparse prefixes the flag's name.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable
from pathlib import Path

MAX_SEED = 2**63 - 1
"""Largest seed: torch and numpy generators take 64-bit seeds; a seed is a non-negative int up to this."""

_DEVICE = re.compile(r"^(cpu|cuda|mps|xpu|hip|meta)(:\d{1,3})?$")


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def int_range(low: int, high: int | None = None) -> Callable[[str], int]:
    """An integer in ``[low, high]`` (``high`` None: no upper bound)."""

    def convert(text: str) -> int:
        value = _int(text)
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{value} is out of range: expected {_range(low, high)}")
        return value

    convert.__name__ = "integer"  # argparse names the type in its messages
    return convert


def float_range(
    low: float | None = None, high: float | None = None, *, open_low: bool = False
) -> Callable[[str], float]:
    """A finite number in ``[low, high]`` (``(low, high]`` with ``open_low``; None: unbounded on that side)."""

    def convert(text: str) -> float:
        value = _float(text)
        below = low is not None and (value <= low if open_low else value < low)
        if below or (high is not None and value > high):
            left = "" if low is None else ("> " if open_low else ">= ") + f"{low:g}"
            right = "" if high is None else f"<= {high:g}"
            raise argparse.ArgumentTypeError(
                f"{value:g} is out of range: expected {' and '.join(filter(None, [left, right]))}"
            )
        return value

    convert.__name__ = "number"
    return convert


positive_int = int_range(1)
"""An integer >= 1 (counts of steps, clips, workers' batches)."""
nonnegative_int = int_range(0)
"""An integer >= 0 (0 usually turns something off)."""
seed = int_range(0, MAX_SEED)
"""A seed: 0 <= seed <= ``MAX_SEED``."""
port = int_range(1, 65535)
"""A TCP port."""
finite_float = float_range()
"""Any finite number (no nan/inf)."""
positive_float = float_range(0.0, open_low=True)
"""A finite number > 0 (learning rates, time-outs)."""
nonnegative_float = float_range(0.0)
"""A finite number >= 0 (loss weights, guidance scales)."""


def nonnegative_floats(text: str) -> tuple[float, ...]:
    """Comma-separated finite numbers >= 0, each once, in the order given (``0,2,4``)."""
    words = [word.strip() for word in text.split(",")]
    if not all(words):
        raise argparse.ArgumentTypeError(f"{text!r}: expected numbers separated by commas, e.g. 0,2,4")
    return tuple(dict.fromkeys(nonnegative_float(word) for word in words))


def device(text: str) -> str:
    """A torch device name: cpu, cuda, cuda:N, mps, xpu, … (checked without importing torch)."""
    if not _DEVICE.match(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a device: use cpu, cuda, cuda:N or mps")
    return text


def output_file(text: str) -> Path:
    """A file to write: not an existing folder, not empty."""
    if not text.strip():
        raise argparse.ArgumentTypeError("empty path")
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder: give a file name")
    return path


def backbone_dir(text: str) -> Path:
    """A ``--backbone`` value: a local diffusers folder, or the name of a backbone shipped with dysen
    (``shapes-wan-tiny``)."""
    from dysen.backbones.folder import backbone_folder

    if not text.strip():
        raise argparse.ArgumentTypeError("empty path")
    return backbone_folder(text)


def adapter_dir(text: str) -> Path:
    """An ``--adapter`` value: a ``dysen train-adapter`` folder (RUN/model), or the name of an adapter shipped
    with dysen (``shapes-wan-tiny-adapter``)."""
    from dysen.backbones.folder import adapter_folder

    if not text.strip():
        raise argparse.ArgumentTypeError("empty path")
    return adapter_folder(text)


def _range(low: int, high: int | None) -> str:
    return f">= {low}" if high is None else f"{low}..{high}"
