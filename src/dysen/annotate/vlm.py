"""Gold DSGs from frames: one frame per time step to a vision-language model, one scene graph per frame back."""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from dysen.annotate.run import DEFAULT_STEPS, AnnotateError
from dysen.data.datasets.base import VideoRecord, video_file
from dysen.dsg import DynamicSceneGraph, Event, SceneGraph, parse_graph
from dysen.errors import DSGError
from dysen.planner.backends.redact import redact


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
        with video_file(record) as path:  # a tar member (video2dataset's WebVid) is copied out first
            frames = step_frames(path, opts.steps, opts.image_size).numpy()  # [M, H, W, 3] uint8
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
            message = redact(err.message, secrets=(self.client.api_key,))  # servers may echo the key
            raise AnnotateError(f"VLM request to {self.options.base_url or 'OpenAI'} failed: {message}") from None
        except (ValueError, RecursionError) as err:  # HTTP 200 with a body that is not JSON, or huge integers
            raise AnnotateError(f"the VLM at {self.options.base_url or 'OpenAI'} sent no JSON chat completion: "
                                f"{redact(str(err)[:200])}") from None  # fmt: skip
        text = response.choices[0].message.content if response.choices else None
        if not text:
            raise AnnotateError("the VLM answered with no text")
        return text
