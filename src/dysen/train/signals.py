"""Stopping a training run cleanly: SIGTERM (a cluster's time limit) and SIGINT (Ctrl-C) end the step in
progress with a checkpoint, and the run continues with ``--resume latest``."""

from __future__ import annotations

import signal
import threading
from typing import Any


class StopSignals:
    """SIGTERM and SIGINT ask the loop to stop after the step in progress, with a checkpoint (a cluster's
    time limit, Ctrl-C): the run then continues with ``--resume latest``. A second signal of the same kind acts
    as it would without this handler. Installed only from the main thread (signals can only be caught there)."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.caught: int | None = None
        self.previous: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for number in self.SIGNALS:
                self.previous[number] = signal.signal(number, self._catch)

    def _catch(self, number: int, frame: Any) -> None:
        self.caught = number
        signal.signal(number, self.previous[number])  # a second one is not deferred
        print(f"\n{signal.Signals(number).name}: stopping after this step with a checkpoint", flush=True)

    def received(self, accelerator: Any) -> bool:
        """Whether any process caught a signal (a collective call when there are several processes)."""
        if accelerator.num_processes == 1:
            return self.caught is not None
        if self.caught is not None:
            accelerator.set_trigger()
        return bool(accelerator.check_trigger())

    def __enter__(self) -> StopSignals:
        return self

    def __exit__(self, *exc: object) -> None:
        for number, handler in self.previous.items():
            signal.signal(number, handler)
        self.previous = {}


def ignore_stop_signals(worker_id: int) -> None:
    """In a data-loader worker: ignore SIGTERM and SIGINT. A scheduler's time limit or Ctrl-C signals the whole
    process group; the main process then finishes its step and checkpoints (``StopSignals``), which needs
    its workers alive. They still exit with the main process, as every loader worker does."""
    for number in StopSignals.SIGNALS:
        signal.signal(number, signal.SIG_IGN)
