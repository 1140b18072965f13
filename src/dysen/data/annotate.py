"""Gold dynamic scene graphs for a video dataset, made in advance (the seed README: "parse the DSG
annotations in advance"); ``dysen dsg annotate`` runs it. Three sources (dysen_spec.md §3):

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

from __future__ import annotations

import base64
import json
import logging
import math
import os
import re
import zlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tqdm.auto import tqdm

from dysen.data.datasets.base import Segment, VideoRecord
from dysen.dsg import DynamicSceneGraph, Event, SceneGraph, events_to_dsg, parse_graph
from dysen.errors import DSGError, DysenError
from dysen.planner.types import Planner

log = logging.getLogger(__name__)

DEFAULT_STEPS = 8
"""M, time steps per video (the Dynamic Shapes and rules-planner default)."""

Annotator = Callable[[VideoRecord], DynamicSceneGraph]


class AnnotateError(DysenError):
    """A video could not be annotated, or the annotation run was set up wrongly."""


# -- timestamps -> events --------------------------------------------------------------------------


def quantise_span(start_s: float, end_s: float, duration_s: float, steps: int = DEFAULT_STEPS) -> tuple[int, int]:
    """The half-open step span ``[start, end)`` of ``[start_s, end_s]`` seconds (module docstring)."""
    if duration_s <= 0 or steps < 1:
        raise AnnotateError(f"need duration > 0 and steps >= 1, got {duration_s} s and {steps} steps")
    start = min(max(math.floor(start_s * steps / duration_s + 0.5), 0), steps - 1)
    end = min(max(math.floor(end_s * steps / duration_s + 0.5), start + 1), steps)
    return start, end


def timestamps_to_dsg(
    segments: Sequence[Segment], duration_s: float, steps: int = DEFAULT_STEPS, planner: Planner | None = None
) -> DynamicSceneGraph:
    """The M-step DSG of timestamped sentences: each sentence's events inside its span (module docstring)."""
    if planner is None:
        from dysen.planner.rules import RulesPlanner

        planner = RulesPlanner()
    events: list[Event] = []
    for segment in segments:
        try:
            plan = planner.plan(segment.sentence)
        except DysenError as err:
            log.debug("sentence %r gives no event: %s", segment.sentence, err)
            continue
        length, span = plan.num_steps, segment.end_s - segment.start_s
        for event in plan.events:
            start_s = segment.start_s + span * event.start / length
            start, end = quantise_span(start_s, segment.start_s + span * event.end / length, duration_s, steps)
            events.append(event.model_copy(update={"start": start, "end": end}))
    if not events:
        raise AnnotateError(f"none of the {len(segments)} sentences gives an event (agent + action)")
    dsg = events_to_dsg(dict.fromkeys(events))
    padding = (SceneGraph(),) * (steps - dsg.num_steps)
    return DynamicSceneGraph(events=dsg.events, graphs=dsg.graphs + padding)


def timestamp_annotator(planner: Planner | None = None, steps: int = DEFAULT_STEPS) -> Annotator:
    """Mode ``timestamps``: a record's segments -> its DSG."""

    def annotate(record: VideoRecord) -> DynamicSceneGraph:
        if not record.segments or not record.duration_s:
            raise AnnotateError(f"{record.id} has no timestamped sentences; use mode 'captions' or 'vlm'")
        return timestamps_to_dsg(record.segments, record.duration_s, steps, planner)

    return annotate


def caption_annotator(planner: Planner) -> Annotator:
    """Mode ``captions``: a record's first caption through ``planner``."""
    return lambda record: planner.plan(record.captions[0])


# -- frames -> VLM -> scene graphs -----------------------------------------------------------------


@dataclass(frozen=True)
class VLMOptions:
    """The vision-language model that reads frames, and how frames are sent to it."""

    model: str
    """Served model name, e.g. 'gpt-4o', 'Qwen/Qwen2.5-VL-7B-Instruct' on vLLM."""
    base_url: str | None = None
    """OpenAI-compatible endpoint; None = OpenAI."""
    api_key_env: str = "OPENAI_API_KEY"
    timeout_s: float = 120.0
    max_retries: int = 3
    """Retries of 429/5xx/timeouts (the SDK's exponential backoff)."""
    steps: int = DEFAULT_STEPS
    """M: frames sent, one per time step."""
    image_size: int = 336
    """Short side of the frames sent, in pixels (aspect kept)."""
    image_format: Literal["png", "jpeg"] = "png"
    max_tokens: int = 1024
    repairs: int = 1
    """Times an unreadable answer is sent back with the parse error before the video counts as failed."""


VLM_SYSTEM = "You are a precise visual scene-graph parser. You describe only what is visible."
VLM_INSTRUCTION = (
    "These are {steps} frames sampled evenly from one video, in time order (Frame 0 is the earliest).{hint} "
    "For each frame, write its scene graph as tuples: (subject, predicate, object) for actions and relations "
    "between two objects, and (object, attribute) for attributes and actions without an object. Use short "
    "lower-case labels and the same label for the same object in every frame. Write exactly {steps} lines, "
    "one per frame, like 'Frame 0: (man, holding, cup), (man, standing), (cup, red)', or 'Frame 0: none'. "
    "No other text."
)
_FRAME_LINE = re.compile(r"^\W*(?:frame|image|step)?\s*#?(\d{1,3})\s*[:.)-]\s*(.*)$", re.IGNORECASE)


def encode_image(frame: Any, image_format: Literal["png", "jpeg"] = "png") -> bytes:
    """uint8 ``[H, W, 3]`` (numpy) -> PNG or JPEG bytes, encoded by PyAV's FFmpeg."""
    import av

    codec, pix_fmt = ("png", "rgb24") if image_format == "png" else ("mjpeg", "yuvj420p")
    context = av.CodecContext.create(codec, "w")
    context.height, context.width = frame.shape[:2]
    context.pix_fmt = pix_fmt
    image = av.VideoFrame.from_ndarray(frame, format="rgb24").reformat(format=pix_fmt)
    return b"".join(bytes(packet) for packet in context.encode(image) + context.encode(None))


def step_frames(path: str | os.PathLike, steps: int, size: int | None) -> Any:
    """uint8 ``[steps, H, W, 3]``: the frame in the middle of each of ``steps`` equal parts of the video."""
    from dysen.data.video import probe, read_video

    stride = max(1, probe(path).num_frames // steps)
    return read_video(path, start=stride // 2, num_frames=steps, stride=stride, size=size, crop=False, pad=True)


def parse_frame_graphs(text: str, steps: int) -> tuple[SceneGraph, ...]:
    """One scene graph per ``Frame k:`` line (k from 0 or 1) of a VLM answer; ``DSGError`` names what is wrong."""
    found: dict[int, str] = {}
    for line in text.splitlines():
        match = _FRAME_LINE.match(line)
        if match:
            found.setdefault(int(match[1]), match[2])
    base = min(found, default=0)
    if sorted(found) != list(range(base, base + steps)) or base not in (0, 1):
        raise DSGError(f"expected lines 'Frame 0:' to 'Frame {steps - 1}:', found frames {sorted(found)}")
    graphs = []
    for k in range(base, base + steps):
        try:
            graphs.append(parse_graph(found[k]))
        except DSGError as err:
            raise DSGError(f"Frame {k}: {err}") from None
    return tuple(graphs)


def graphs_to_dsg(graphs: Sequence[SceneGraph]) -> DynamicSceneGraph:
    """A DSG of per-step graphs whose events are the relations, each over every run of consecutive steps."""
    events, open_since = [], {}
    for step, graph in enumerate([*graphs, SceneGraph()]):
        now = set(graph.relations)
        for relation in [r for r in open_since if r not in now]:
            events.append(Event(agent=relation.subject, predicate=relation.predicate, target=relation.object,
                                start=open_since.pop(relation), end=step))  # fmt: skip
        for relation in graph.relations:
            open_since.setdefault(relation, step)
    return DynamicSceneGraph(events=sorted(events, key=lambda e: (e.start, e.end)), graphs=tuple(graphs))


class VLMAnnotator:
    """Mode ``vlm`` (module docstring): a record's frames -> per-step scene graphs -> DSG."""

    def __init__(self, options: VLMOptions) -> None:
        import openai

        key = os.environ.get(options.api_key_env)
        if not key and options.base_url is None:
            raise AnnotateError(
                f"no API key for the OpenAI API: set {options.api_key_env}, or pass a base_url for a local server"
            )
        self.options = options
        self.client = openai.OpenAI(
            api_key=key or "no-key-needed", base_url=options.base_url, timeout=options.timeout_s,
            max_retries=options.max_retries,
        )  # fmt: skip

    def __call__(self, record: VideoRecord) -> DynamicSceneGraph:
        opts = self.options
        frames = step_frames(record.path, opts.steps, opts.image_size).numpy()  # [M, H, W, 3] uint8
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": VLM_SYSTEM},
            {"role": "user", "content": self._content(frames, record.captions[0] if record.captions else None)},
        ]
        error: DSGError | None = None
        for _ in range(opts.repairs + 1):
            answer = self._ask(messages)
            try:
                return graphs_to_dsg(parse_frame_graphs(answer, opts.steps))
            except DSGError as err:
                error = err
                fix = f"Your answer could not be read: {err}. Reply again with exactly {opts.steps} 'Frame k:' lines."
                messages += [{"role": "assistant", "content": answer}, {"role": "user", "content": fix}]
        raise AnnotateError(f"unreadable VLM answer for {record.id} after {opts.repairs} repair(s): {error}")

    def _content(self, frames: Any, caption: str | None) -> list[dict[str, Any]]:
        """The instruction, then one ``image_url`` part per frame (base64 data URL)."""
        hint = f' The video\'s caption, for context, is "{caption}".' if caption else ""
        parts: list[dict[str, Any]] = [
            {"type": "text", "text": VLM_INSTRUCTION.format(steps=self.options.steps, hint=hint)}
        ]
        mime = f"image/{self.options.image_format}"
        for frame in frames:
            data = base64.b64encode(encode_image(frame, self.options.image_format)).decode("ascii")
            parts.append({"type": "image_url", "image_url": {"url": f"data:{mime};base64,{data}"}})
        return parts

    def _ask(self, messages: list[dict[str, Any]]) -> str:
        import openai

        try:
            response = self.client.chat.completions.create(
                model=self.options.model, messages=messages, temperature=0.0, max_tokens=self.options.max_tokens
            )
        except openai.APIError as err:  # not chained: SDK errors hold the request headers
            raise AnnotateError(f"VLM request to {self.options.base_url or 'OpenAI'} failed: {err.message}") from None
        text = response.choices[0].message.content if response.choices else None
        if not text:
            raise AnnotateError("the VLM answered with no text")
        return text


# -- the resumable, sharded run ----------------------------------------------------------------


@dataclass(frozen=True)
class AnnotateReport:
    """What a run did: videos in its shard, already done before it, annotated now, failed now."""

    total: int
    already_done: int
    annotated: int
    failed: int


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> ``(i, n)`` with 1 <= i <= n."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match or not 1 <= int(match[1]) <= int(match[2]):
        raise AnnotateError(f"--shard must look like 1/4 (shard i of n, 1 <= i <= n), got {text!r}")
    return int(match[1]), int(match[2])


def in_shard(video_id: str, shard: tuple[int, int]) -> bool:
    """Whether ``video_id`` belongs to shard ``(i, n)``: CRC-32 of the id is i - 1 modulo n."""
    return zlib.crc32(video_id.encode("utf-8")) % shard[1] == shard[0] - 1


def annotate(
    records: Sequence[VideoRecord],
    annotator: Annotator,
    out: str | os.PathLike,
    *,
    source: str,
    shard: tuple[int, int] = (1, 1),
    concurrency: int = 1,
    progress: bool = True,
) -> AnnotateReport:
    """Annotate the records of ``shard`` not yet done in ``out``, appending a line per video (module docstring)."""
    if concurrency < 1:
        raise AnnotateError(f"concurrency must be >= 1, got {concurrency}")
    path = Path(out)
    mine = [r for r in records if in_shard(r.id, shard)]
    done = _done_ids(path)
    pending = [r for r in mine if r.id not in done]
    failed = 0
    bar = tqdm(total=len(mine), initial=len(mine) - len(pending), desc=f"annotating ({source})", unit="video",
               disable=not progress)  # fmt: skip
    with bar, _appender(path) as write, ThreadPoolExecutor(concurrency, thread_name_prefix="dysen-annotate") as pool:
        futures = [pool.submit(_annotate_one, annotator, record, source) for record in pending]
        try:
            for future in as_completed(futures):
                result = future.result()
                write(result)
                failed += result["dsg"] is None
                bar.set_postfix(failed=failed, refresh=False)
                bar.update(1)
        finally:
            for future in futures:
                future.cancel()
    return AnnotateReport(len(mine), len(mine) - len(pending), len(pending) - failed, failed)


def _annotate_one(annotator: Annotator, record: VideoRecord, source: str) -> dict[str, Any]:
    try:
        return {"id": record.id, "dsg": annotator(record).to_dict(), "source": source}
    except Exception as err:  # recorded, not raised: one bad video must not stop the run
        log.warning("%s failed: %s", record.id, err, exc_info=not isinstance(err, DysenError))
        return {"id": record.id, "dsg": None, "source": source, "error": f"{type(err).__name__}: {err}"}


def _done_ids(path: Path) -> set[str]:
    """Ids whose latest record in ``path`` holds a DSG; unreadable lines (a killed run) are ignored."""
    if not path.exists():
        return set()
    latest: dict[str, bool] = {}
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            try:
                record = json.loads(line)
                latest[str(record["id"])] = record.get("dsg") is not None
            except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
                continue
    return {id_ for id_, ok in latest.items() if ok}


@contextmanager
def _appender(path: Path) -> Iterator[Callable[[dict[str, Any]], None]]:
    """A function appending one flushed JSON line to ``path``; a line cut short by a kill is closed first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+b") as file:
        if file.tell() > 0:
            file.seek(-1, os.SEEK_END)
            if file.read(1) != b"\n":
                file.write(b"\n")

        def write(record: dict[str, Any]) -> None:
            file.write((json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"))
            file.flush()

        yield write
