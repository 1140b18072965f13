"""What a VDM training batch costs the main process when a DataLoader worker sends it.

A worker pickles everything in a batch except tensors (which travel through shared memory), and the main
process unpickles it before the step. Batches used to carry the gold DSGs as pydantic objects, padded into
tensors in ``VDMTask.step``; ``GraphCollate`` now pads them in the worker and drops the objects. This
times, for one batch of Dynamic Shapes clips, side by side in one process (median of ``--repeats``):

* ``dsg_objects``: pickle in the worker + unpickle in the main process of the DSG objects, plus padding them
  into a ``GraphBatch`` in the main process (the old path);
* ``graph_batch``: pickle + unpickle of the ``GraphBatch`` (the new path; its tensors pickled too, an
  upper bound of the shared-memory handover).

    python benchmarks/vdm_batch_transfer.py [--batch 128] [--repeats 7] [--out result.json]
"""

from __future__ import annotations

import argparse
import pickle
import statistics
import time
from pathlib import Path

import torch
from report import emit, machine  # benchmarks/report.py, beside this script

from dysen.data.shapes import ShapesConfig, sample_clip
from dysen.models.graph_batch import GraphBatch

LATENT_FRAMES = 16  # shapes-tiny: 16 frames, a frame-wise autoencoder


def timed(fn: object, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    dsgs = [sample_clip(i, "train", 0, ShapesConfig()).dsg for i in range(args.batch)]
    graphs = GraphBatch.from_dsgs(dsgs, LATENT_FRAMES)
    old_blob, new_blob = pickle.dumps(dsgs), pickle.dumps(graphs)
    parts = {
        "pickle_dsg_objects_s": timed(lambda: pickle.dumps(dsgs), args.repeats),
        "unpickle_dsg_objects_s": timed(lambda: pickle.loads(old_blob), args.repeats),
        "pad_graph_batch_s": timed(lambda: GraphBatch.from_dsgs(dsgs, LATENT_FRAMES), args.repeats),
        "pickle_graph_batch_s": timed(lambda: pickle.dumps(graphs), args.repeats),
        "unpickle_graph_batch_s": timed(lambda: pickle.loads(new_blob), args.repeats),
    }
    old_main = parts["unpickle_dsg_objects_s"] + parts["pad_graph_batch_s"]  # what the training process paid
    new_main = parts["unpickle_graph_batch_s"]
    report = {
        "benchmark": "vdm_batch_transfer",
        "machine": machine(torch=torch.__version__),
        "batch": args.batch,
        "seconds": {name: round(value, 5) for name, value in parts.items()},
        "main_process_s": {"dsg_objects": round(old_main, 5), "graph_batch": round(new_main, 5)},
        "main_process_speedup": round(old_main / new_main, 1),
    }
    emit(report, args.out)


if __name__ == "__main__":
    main()
