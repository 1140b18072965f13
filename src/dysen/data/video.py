"""Video files in and out, with PyAV: probe, frame-exact reading, atomic writing of mp4 and GIF.

Every video that enters or leaves dysen passes through here, so the rules are strict and written down:

* **Frame index** = position in the decoder's output (display order), counting every decoded frame
  once. Timestamps are not trusted for indexing: real files have variable frame rates (AVI with
  dropped frames) and broken timestamps (mp4 with B-frames whose pts equal their dts).
* **Frame count** (``probe``) = the number of non-empty, non-discarded video packets, one frame each;
  a demux pass, no decoding. ``probe(path, verify=True)`` decodes every frame to confirm it.
* **Seeking**: ``read_video`` demuxes the packet list once, then starts decoding at the last keyframe
  at or before ``start`` whose GOP is closed (no later packet is displayed before it), so that the
  keyframe's display index is its packet position. If the decoder does not land where the index says,
  it falls back to decoding from the first frame. Either way the result equals a full decode.
* **Damaged files are refused whole**: a truncated file (a partial last packet, or fewer packets than
  an mp4's sample table declares) raises ``VideoError`` from ``probe`` and ``read_video`` even when a
  prefix would decode; so does a decoder error inside the frames being decoded.
* **Bounded reads**: frames are resized one at a time as they are decoded, so ``read_video(size=...)`` holds one
  full-size frame, not the clip; ``read_within`` reads a whole video within a ``FrameBudget`` (frames, short
  side, pixels) for readers that take videos whole (the scorers of ``dysen eval --videos``).
* **Writes are atomic**: a hidden temporary file in the destination folder, then ``os.replace``.

Layouts: uint8 frames ``[T, H, W, 3]`` at this edge; the model layout ``[3, T, H, W]`` in [-1, 1] via
``frames_to_model`` / ``model_to_frames`` (DESIGN.md §5), defined with the networks in ``dysen.models.frames``
(the pipeline converts its output below this package) and part of this module's API.
"""

from __future__ import annotations

import math
import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
import torch.nn.functional as F

from dysen.errors import VideoError
from dysen.models.frames import frames_to_model
from dysen.models.frames import model_to_frames as model_to_frames  # part of this module's API (docstring)

if TYPE_CHECKING:
    import av


def _av() -> ModuleType:
    """PyAV, imported on first use: the tensor helpers of this module (and training from latents) need no FFmpeg."""
    import av

    return av


def _pyav_errors() -> tuple[type[BaseException], ...]:
    """What PyAV raises for bad files: ``FFmpegError`` and its subclasses (which include ``InvalidDataError``),
    and ``OSError`` for I/O failures (PyAV's file errors subclass it too)."""
    return (_av().error.FFmpegError, OSError)


_MP4_FAMILY = "mov,mp4,m4a,3gp,3g2,mj2"
"""FFmpeg's demuxer name for mp4/mov: its stream frame count is the sample table, so it is exact."""

WRITABLE_SUFFIXES = (".mp4", ".gif")


@dataclass(frozen=True)
class VideoInfo:
    """What ``probe`` learns about a video's first video stream."""

    num_frames: int
    """Frames ``read_video`` can return (see the module docstring for how they are counted)."""
    fps: float
    """Mean rate of those frames, ``num_frames / duration_s``; the container's nominal rate if no duration."""
    width: int
    height: int
    duration_s: float
    codec: str
    """FFmpeg's decoder name, e.g. 'h264', 'cinepak', 'gif'."""


@dataclass(frozen=True)
class _Packet:
    """One frame-bearing video packet, in decode order."""

    pts: int | None
    keyframe: bool


# -- reading ---------------------------------------------------------------------------------------


@contextmanager
def _open_video(path: str | os.PathLike) -> Iterator[tuple[av.container.InputContainer, av.video.VideoStream]]:
    """Open ``path`` and yield (container, first video stream); every failure becomes a ``VideoError``."""
    file = Path(path)
    if not file.is_file():
        raise VideoError(f"video file {file} does not exist or is not a file")
    if file.stat().st_size == 0:
        raise VideoError(f"video file {file} is empty (0 bytes)")
    try:
        container = _av().open(str(file), "r", metadata_errors="replace")
    except _pyav_errors() as err:
        raise VideoError(f"{file} is not a readable video (truncated, corrupt or not a video): {err}") from None
    try:
        if not container.streams.video:
            raise VideoError(f"{file} has no video stream (streams: {[s.type for s in container.streams]})")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        yield container, stream
    finally:
        container.close()


def _packet_index(file: Path, container: av.container.InputContainer, stream: av.video.VideoStream) -> list[_Packet]:
    """Demux every packet of ``stream``: the frame-bearing ones in decode order; refuse truncated files."""
    packets, read = [], 0
    try:
        for packet in container.demux(stream):
            if packet.size == 0:  # the end-of-stream marker PyAV yields, or an AVI 'dropped frame'
                continue
            if packet.is_corrupt:
                raise VideoError(f"{file} is truncated or corrupt: packet {read} is damaged ({len(packets)} intact)")
            read += 1
            if not packet.is_discard:  # mp4 edit lists mark samples that are never shown
                packets.append(_Packet(packet.pts, bool(packet.is_keyframe)))
    except _pyav_errors() as err:
        raise VideoError(f"{file} is corrupt: demuxing failed after {read} packets: {err}") from None
    declared = stream.frames
    if container.format.name == _MP4_FAMILY and declared and read < declared:
        raise VideoError(f"{file} is truncated: its index lists {declared} video frames but only {read} are present")
    if not packets:
        raise VideoError(f"{file} has a video stream but no frames")
    return packets


def _stream_info(stream: av.video.VideoStream, num_frames: int) -> VideoInfo:
    """Assemble a ``VideoInfo`` from stream metadata and a frame count."""
    if stream.duration is not None and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base)
    elif stream.container.duration is not None:
        duration = stream.container.duration / _av().time_base
    else:
        duration = 0.0
    nominal = stream.average_rate or stream.guessed_rate or stream.base_rate
    fps = num_frames / duration if duration > 0 else float(nominal or 0.0)
    if duration <= 0 and fps > 0:
        duration = num_frames / fps
    ctx = stream.codec_context
    return VideoInfo(num_frames, fps, ctx.width, ctx.height, duration, ctx.name)


def probe(path: str | os.PathLike, *, verify: bool = False) -> VideoInfo:
    """Frame count, rate, size, duration and codec of the first video stream of ``path``.

    ``verify=True`` also decodes every frame (slower) and raises ``VideoError`` unless exactly
    ``num_frames`` frames decode without error.
    """
    file = Path(path)
    with _open_video(file) as (container, stream):
        packets = _packet_index(file, container, stream)
        info = _stream_info(stream, len(packets))
    if verify:
        decoded = _decode_count(file)
        if decoded != len(packets):
            raise VideoError(f"{file} decodes to {decoded} frames, not the {len(packets)} its packets promise")
    return info


def _decode_count(file: Path) -> int:
    """Number of frames a full decode of ``file`` yields (no pixel conversion)."""
    with _open_video(file) as (container, stream):
        count = 0
        try:
            for _ in container.decode(stream):
                count += 1
        except _pyav_errors() as err:
            raise _decode_failure(file, count, err) from None
    if count == 0:
        raise _decode_failure(file, 0, None)
    return count


def _decode_failure(file: Path, decoded: int, err: Exception | None) -> VideoError:
    """The error for a decoder that failed (``err``) or ran dry after ``decoded`` good frames."""
    what = "has no decodable frames" if decoded == 0 else f"is corrupt: decoding failed after {decoded} frames"
    return VideoError(f"{file} {what}" + (f" ({err})" if err is not None else ""))


def _frame_indices(file: Path, total: int, start: int, num_frames: int | None, stride: int, pad: bool) -> list[int]:
    """The frame indices to return, in order; past-the-end indices repeat the last frame when ``pad``."""
    if start >= total:
        raise VideoError(f"{file} has {total} frames; cannot start at frame {start}")
    if num_frames is None:
        return list(range(start, total, stride))
    wanted = [start + i * stride for i in range(num_frames)]
    if wanted[-1] >= total and not pad:
        raise VideoError(
            f"{file} has {total} frames, but {num_frames} frames with stride {stride} from frame {start} need "
            f"frame {wanted[-1]}; pass a smaller start/stride, or pad=True to repeat the last frame"
        )
    return [min(i, total - 1) for i in wanted]


def _seek_position(packets: list[_Packet], first: int) -> int:
    """The last keyframe position <= ``first`` that starts a closed GOP (0 when there is none).

    A keyframe at decode position k is safe when every packet before it is displayed before every
    packet from it on (max pts before < min pts from k); then its display index is k.
    """
    if any(p.pts is None for p in packets):
        return 0
    pts = np.array([p.pts for p in packets], dtype=np.int64)  # [N]
    if len(np.unique(pts)) != len(pts):
        return 0
    before_max = np.maximum.accumulate(pts)  # [N]: max pts of packets 0..k
    after_min = np.minimum.accumulate(pts[::-1])[::-1]  # [N]: min pts of packets k..N-1
    keyframe = np.array([p.keyframe for p in packets[1:]], dtype=bool)  # [N - 1]: packets 1..N-1
    safe = keyframe & (before_max[:-1] < after_min[1:])  # [N - 1]
    candidates = np.flatnonzero(safe[:first]) + 1
    return int(candidates[-1]) if len(candidates) else 0


def _decode_frames(
    file: Path, packets: list[_Packet], wanted: list[int], seek: bool, convert: FrameFn
) -> list[torch.Tensor] | None:
    """Decode the frames at sorted, unique ``wanted``, each passed through ``convert`` as soon as it is decoded (so
    only one full-size frame is alive); with ``seek``, None if the seek misses its mark."""
    k = _seek_position(packets, wanted[0]) if seek else 0
    order = {p.pts: i for i, p in enumerate(packets)}
    out: list[torch.Tensor] = []
    with _open_video(file) as (container, stream):
        position = 0 if k == 0 else None
        if k > 0:
            container.seek(packets[k].pts, backward=True, any_frame=False, stream=stream)
        try:
            for frame in container.decode(stream):
                if position is None:  # after a seek: skip to the keyframe the index points at
                    landed = order.get(frame.pts)
                    if landed is None or landed > k:
                        return None
                    if landed < k:
                        continue
                    position = k
                if position == wanted[len(out)]:
                    out.append(convert(frame.to_ndarray(format="rgb24")))  # [H, W, 3] -> [h, w, 3]
                    if len(out) == len(wanted):
                        return out
                position += 1
        except _pyav_errors() as err:
            raise _decode_failure(file, position or 0, err) from None
    if position is None:
        return None
    raise _decode_failure(file, position, None)


FrameFn = Callable[[np.ndarray], torch.Tensor]
"""What happens to each decoded uint8 frame ``[H, W, 3]``: a uint8 tensor ``[h, w, 3]``."""


def _frame_converter(size: int | None, crop: bool) -> FrameFn:
    """The identity, or the resize of ``_resize`` applied to one frame (resizing is per frame, so this equals
    resizing the stacked clip)."""

    def convert(image: np.ndarray) -> torch.Tensor:
        frame = torch.from_numpy(image)  # [H, W, 3] uint8
        if size is None:
            return frame
        resized = _resize(frame.permute(2, 0, 1)[None].float(), size, crop)  # [1, 3, h, w]
        return resized[0].round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).contiguous()  # [h, w, 3]

    return convert


def _resize(video: torch.Tensor, size: int, crop: bool) -> torch.Tensor:
    """Resize float ``[T, 3, H, W]`` so the short side is ``size`` (bilinear, antialiased); then centre-crop."""
    height, width = video.shape[-2:]
    scale = size / min(height, width)
    new_h, new_w = max(size, round(height * scale)), max(size, round(width * scale))
    video = F.interpolate(video, size=(new_h, new_w), mode="bilinear", antialias=True, align_corners=False)
    if crop:
        top, left = (new_h - size) // 2, (new_w - size) // 2
        video = video[..., top : top + size, left : left + size]  # [T, 3, size, size]
    return video


def resize_frames(frames: np.ndarray, size: int) -> np.ndarray:
    """uint8 ``[T, H, W, 3]`` frames with the short side scaled to ``size`` (aspect kept; bilinear, antialiased)."""
    video = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()  # [T, 3, H, W]
    resized = _resize(video, size, crop=False).round().clamp(0, 255).to(torch.uint8)  # [T, 3, h, w]
    return resized.permute(0, 2, 3, 1).contiguous().numpy()  # [T, h, w, 3]


def read_video(
    path: str | os.PathLike,
    *,
    start: int = 0,
    num_frames: int | None = None,
    stride: int = 1,
    size: int | None = None,
    crop: bool = True,
    output: Literal["uint8", "float"] = "uint8",
    pad: bool = False,
) -> torch.Tensor:
    """Frames ``start, start + stride, ...`` of ``path`` (all to the end when ``num_frames`` is None).

    ``size``: resize the short side to ``size`` (then centre-crop to ``size`` x ``size`` when ``crop``).
    Returns uint8 ``[T, H, W, 3]``, or for ``output="float"`` float32 ``[3, T, H, W]`` in [-1, 1].
    Asking for frames past the end raises ``VideoError`` (saying how many there are) unless ``pad``,
    which repeats the last frame instead.
    """
    if output not in ("uint8", "float"):
        raise ValueError(f"output must be 'uint8' or 'float', got {output!r}")
    if start < 0 or stride < 1 or (num_frames is not None and num_frames < 1) or (size is not None and size < 1):
        raise ValueError(
            f"need start >= 0, stride >= 1, num_frames >= 1, size >= 1; got {start}, {stride}, {num_frames}, {size}"
        )
    file = Path(path)
    with _open_video(file) as (container, stream):
        packets = _packet_index(file, container, stream)
    indices = _frame_indices(file, len(packets), start, num_frames, stride, pad)
    frames = _read_frames(file, packets, indices, _frame_converter(size, crop))  # [T, h, w, 3] uint8
    return frames_to_model(frames) if output == "float" else frames


def _read_frames(file: Path, packets: list[_Packet], indices: list[int], convert: FrameFn) -> torch.Tensor:
    """uint8 ``[T, h, w, 3]``: the frames at ``indices`` (any order, repeats allowed), each through ``convert``."""
    unique = sorted(set(indices))
    decoded = _decode_frames(file, packets, unique, seek=True, convert=convert)
    if decoded is None:
        decoded = _decode_frames(file, packets, unique, seek=False, convert=convert)
    by_index = dict(zip(unique, decoded, strict=True))
    return torch.stack([by_index[i] for i in indices])  # [T, h, w, 3] uint8


@dataclass(frozen=True)
class FrameBudget:
    """The most of a video a reader that takes whole videos keeps (a scorer): frames and short side."""

    max_frames: int
    """Longer videos keep every k-th frame, k = ceil(frames / max_frames) (the frame rate divides by k)."""
    max_side: int
    """Videos whose short side is longer are scaled down (aspect kept, antialiased) so it is ``max_side``."""
    max_pixels: int
    """... and further, if the frames kept hold more pixels in all (frames x height x width) than this."""

    def short_side(self, frames: int, height: int, width: int) -> int | None:
        """The short side to scale ``frames`` frames of ``height x width`` to, or None to keep them as they are."""
        short = min(height, width)
        fit = int(short * math.sqrt(self.max_pixels / (frames * height * width)))  # frames x h x w <= max_pixels
        side = min(self.max_side, fit)
        return max(side, 1) if side < short else None


@dataclass(frozen=True)
class BoundedVideo:
    """A video as ``read_within`` reads it."""

    frames: torch.Tensor  # uint8 [T, h, w, 3]
    fps: float
    """The rate of the frames kept: the file's divided by ``stride``."""
    stride: int
    """Every ``stride``-th frame of the file was kept (1: all)."""
    info: VideoInfo
    """The file as it is (``probe``)."""


def read_within(path: str | os.PathLike, budget: FrameBudget) -> BoundedVideo:
    """The whole of ``path`` within ``budget``: every frame, or every k-th, each scaled down as it is decoded when the
    budget says so; one full-size frame at a time is held. A video within the budget reads as ``read_video``."""
    file = Path(path)
    with _open_video(file) as (container, stream):
        packets = _packet_index(file, container, stream)
        info = _stream_info(stream, len(packets))
    stride = -(-len(packets) // budget.max_frames)  # ceil
    indices = list(range(0, len(packets), stride))
    size = budget.short_side(len(indices), info.height, info.width)
    frames = _read_frames(file, packets, indices, _frame_converter(size, crop=False))
    return BoundedVideo(frames, info.fps / stride, stride, info)


# -- writing ---------------------------------------------------------------------------------------

_GIF_CUBE_LEVELS = (6, 7, 6)
"""Levels per R, G, B channel of the fixed GIF palette used when a clip has more than 256 colours
(6 * 7 * 6 = 252 entries; green gets the extra level because the eye resolves it best)."""


def _as_frames(frames: np.ndarray | torch.Tensor) -> np.ndarray:
    """Check and convert the writer's input to a C-contiguous uint8 ``[T, H, W, 3]`` array."""
    if isinstance(frames, torch.Tensor):
        frames = frames.detach().cpu().numpy()
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
        raise ValueError(
            f"write_video needs uint8 frames [T, H, W, 3] with T >= 1, got {frames.dtype} {list(frames.shape)}; "
            "convert model output [3, T, H, W] in [-1, 1] with model_to_frames first"
        )
    return np.ascontiguousarray(frames)


def _even(frames: np.ndarray) -> np.ndarray:
    """Pad an odd height or width by repeating the last row/column: yuv420p needs even sizes."""
    _, height, width, _ = frames.shape
    return np.pad(frames, ((0, 0), (0, height % 2), (0, width % 2), (0, 0)), mode="edge")  # [T, H', W', 3]


def _encode_mp4(container: av.container.OutputContainer, frames: np.ndarray, rate: Fraction, crf: int) -> None:
    """H.264 (libx264, yuv420p) at constant quality ``crf``; odd sizes are padded to even."""
    frames = _even(frames)  # [T, H', W', 3]
    stream = container.add_stream("libx264", rate=rate)
    stream.width, stream.height = frames.shape[2], frames.shape[1]
    stream.pix_fmt = "yuv420p"
    stream.options = {"crf": str(crf)}
    for image in frames:
        container.mux(stream.encode(_av().VideoFrame.from_ndarray(image, format="rgb24")))
    container.mux(stream.encode(None))


def _gif_palette(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Palette indices ``[T, H, W]`` and a 256-entry ARGB palette: exact when there are <= 256 colours."""
    flat = frames.reshape(-1, 3)  # [N, 3]
    colours, inverse = np.unique(flat, axis=0, return_inverse=True)
    if len(colours) > 256:
        levels = np.array(_GIF_CUBE_LEVELS)
        steps = np.rint(flat.astype(np.float32) * (levels - 1) / 255.0).astype(np.int64)  # [N, 3] per-channel level
        inverse = (steps[:, 0] * levels[1] + steps[:, 1]) * levels[2] + steps[:, 2]  # [N]
        grid = np.stack(np.meshgrid(*[np.arange(n) for n in levels], indexing="ij"), axis=-1).reshape(-1, 3)
        colours = np.rint(grid * 255.0 / (levels - 1)).astype(np.uint8)  # [252, 3]
    palette = np.zeros((256, 4), dtype=np.uint8)  # ARGB
    palette[: len(colours), 0] = 255
    palette[: len(colours), 1:] = colours
    return inverse.reshape(frames.shape[:3]).astype(np.uint8), palette


def _encode_gif(container: av.container.OutputContainer, frames: np.ndarray, rate: Fraction) -> None:
    """GIF with one global palette (exact for <= 256 colours, else a fixed 6x7x6 colour cube)."""
    indices, palette = _gif_palette(frames)  # [T, H, W], [256, 4]
    stream = container.add_stream("gif", rate=rate)
    stream.width, stream.height = frames.shape[2], frames.shape[1]
    stream.pix_fmt = "pal8"
    for image in indices:
        container.mux(stream.encode(_av().VideoFrame.from_ndarray((image, palette), format="pal8")))
    container.mux(stream.encode(None))


def write_video(path: str | os.PathLike, frames: np.ndarray | torch.Tensor, fps: float = 8, *, crf: int = 18) -> Path:
    """Write uint8 ``[T, H, W, 3]`` frames (numpy or torch) to ``.mp4`` (H.264) or ``.gif``, atomically.

    mp4: libx264, yuv420p, quality ``crf`` (0-51, lower is better), index first (faststart); an odd height
    or width is padded to even by repeating the last row/column, so it reads back one pixel larger.
    GIF: one palette for the clip, exact up to 256 colours, else a fixed 252-colour cube; frame times are
    whole 1/100 s (8 fps plays at 7.97); ``crf`` is ignored. Returns the path written.
    """
    file = Path(path)
    suffix = file.suffix.lower()
    if suffix not in WRITABLE_SUFFIXES:
        raise ValueError(f"cannot write {file}: the suffix must be one of {WRITABLE_SUFFIXES}")
    if fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    images = _as_frames(frames)  # [T, H, W, 3]
    rate = Fraction(fps).limit_denominator(1001)
    tmp = file.with_name(f".{file.name}.{secrets.token_hex(4)}.tmp")
    try:
        options = {"movflags": "+faststart"} if suffix == ".mp4" else {}  # mp4 index first: plays while loading
        with _av().open(str(tmp), "w", format=suffix[1:], options=options) as container:
            if suffix == ".mp4":
                _encode_mp4(container, images, rate, crf)
            else:
                _encode_gif(container, images, rate)
        os.replace(tmp, file)
    except _pyav_errors() as err:
        raise VideoError(f"could not write {file}: {err}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return file
