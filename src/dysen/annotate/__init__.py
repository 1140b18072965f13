"""Gold dynamic scene graphs for a video dataset, made in advance (the seed README: "parse the DSG
annotations in advance"); ``dysen dsg annotate`` runs it, and datasets only read what it wrote
(``dysen.data.datasets.read_gold``). It sits above the planner: ``text`` (timestamps, captions),
``vlm`` (frames), ``run`` (the sharded, resumable run). Three sources (dysen_spec.md §3):

* ``timestamps`` (ActivityNet Captions, eval_data.md §5.4): each sentence is planned alone (the rules
  planner, or any ``Planner``) for its (agent, predicate, target) triplets, and its events are placed
  inside the sentence's time span. **Quantisation**: the annotated duration d is cut into M steps
  (default 8) of d / M seconds; an event over [a, b] seconds covers steps
  ``[round(a M / d), round(b M / d))`` (half up), clamped to [0, M] and at least one step long. A
  sentence the planner splits into several events shares its span among them in their planned
  proportions, before rounding. The DSG always has M steps: steps with no event get an empty graph.
* ``captions``: the whole caption (the first, when a video has several) through any ``Planner``.
* ``vlm``: the modern replacement of the paper's 2017 image scene-graph parser (MotifNet on Visual
  Genome). M frames, one from the middle of each step, go to a vision-language model behind an
  OpenAI-compatible API as base64 ``image_url`` parts (PNG or JPEG, encoded with PyAV), with the
  instruction to write one scene graph per frame in the paper's tuple format. Each line is read by
  ``dysen.dsg.textfmt.parse_graph``; an unreadable answer is sent back once with the error (repair),
  then the video is recorded as failed. A relation holding over consecutive frames becomes an event.

Every mode is sharded (``shard=(i, n)`` keeps the ids whose CRC-32 is i - 1 modulo n, stable under
reordering) and resumable: the output JSONL gets one flushed line per video, ``{"id", "dsg", "source"}``
or, on failure, ``{"id", "dsg": null, "source", "error"}``; a rerun skips the ids that already have a
DSG and retries the failed ones (the later line wins; ``read_gold`` reads the file back).
"""

from dysen.annotate.run import DEFAULT_STEPS, AnnotateError, AnnotateReport, Annotator, annotate, in_shard, parse_shard
from dysen.annotate.text import caption_annotator, quantise_span, timestamp_annotator, timestamps_to_dsg
from dysen.annotate.vlm import (
    VLMAnnotator,
    VLMOptions,
    encode_image,
    graphs_to_dsg,
    parse_frame_graphs,
    step_frames,
)

__all__ = [
    "DEFAULT_STEPS",
    "AnnotateError",
    "AnnotateReport",
    "Annotator",
    "VLMAnnotator",
    "VLMOptions",
    "annotate",
    "caption_annotator",
    "encode_image",
    "graphs_to_dsg",
    "in_shard",
    "parse_frame_graphs",
    "parse_shard",
    "quantise_span",
    "step_frames",
    "timestamp_annotator",
    "timestamps_to_dsg",
]
