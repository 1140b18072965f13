"""The demo's settings, declared once: what a request may ask (``DemoLimits``) and how the page starts and queues
(``PageOptions``). Light (no Gradio, no torch), so ``dysen demo``'s flags take their defaults from here."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DemoLimits:
    """Bounds on one request, so a public page cannot ask for unbounded work."""

    max_prompt_chars: int = 500
    """Longest prompt, in characters."""
    max_plan_chars: int = 50_000
    """Longest edited plan (JSON or tuple text), in characters."""
    max_steps: int = 100
    """Most denoising steps."""
    max_frames: int = 64
    """Most video frames."""
    max_guidance: float = 30.0
    """Largest text or DSG guidance scale."""


@dataclass(frozen=True)
class PageOptions:
    """How the page looks and queues: defaults of the controls and the queue's bounds."""

    steps: int | None = None
    """Initial steps, guidance and DSG guidance of the controls; None: the model's (``SamplingSettings.resolve``)."""
    guidance: float | None = None
    dsg_guidance: float | None = None
    planner_model: str | None = None
    """Prefilled model name of the openai planner."""
    concurrency: int = 2
    """Requests run at once per event (the model itself renders one video at a time)."""
    queue_size: int = 32
    """Requests that may wait; more are refused with a 'queue is full' message."""
    random_weights: bool = False
    """Warn on the page that the model is untrained."""


@dataclass(frozen=True)
class UploadLimits:
    """Gradio's own file routes: the page needs no uploads (plans are text), so they are kept small and short-lived,
    in the demo's workdir."""

    max_file_bytes: int = 1_000_000
    """Largest file Gradio's upload route accepts (larger: HTTP 413)."""
    sweep_every_s: int = 600
    """How often Gradio deletes the files it cached for the page (uploads, outputs it copied)."""
    max_age_s: int = 3600
    """Age at which a cached file is deleted."""
    folder: str = "gradio-cache"
    """Gradio's cache folder, inside the demo's workdir (not the system's temp folder)."""
