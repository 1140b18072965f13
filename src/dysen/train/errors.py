"""The errors of a training run (re-exported by ``dysen.train.loop``)."""

from __future__ import annotations

from dysen.errors import DysenError


class TrainError(DysenError):
    """A training run cannot start or continue (bad settings, too little data, a run folder in the way)."""


class NonFiniteLossError(TrainError):
    """The loss was NaN/inf for ``max_nonfinite`` steps in a row; a checkpoint was written first."""
