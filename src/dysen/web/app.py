"""The Gradio page of the web demo: prompt -> editable plan (DSG JSON + timeline) -> video.

Only wiring lives here; the work is ``DemoService`` and the checks ``dysen.web.checks``. Nothing phones
home: analytics are off, the theme uses the browser's own fonts (no font CDN), and the page is served
without server-side rendering. The API key of an LLM endpoint stays in the server's environment.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported: no usage pings
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import gradio as gr  # noqa: E402

from dysen.errors import DysenError  # noqa: E402
from dysen.web.checks import PLANNERS, check_settings, show_plan  # noqa: E402
from dysen.web.options import PageOptions, UploadLimits  # noqa: E402
from dysen.web.service import DemoService  # noqa: E402

_TRACK_TQDM = gr.Progress(track_tqdm=True)
"""The generate handler's progress: the pipeline's tqdm bar over denoising steps, shown on the page."""

EXAMPLES = [
    "a red circle moves right, then a blue square jumps",
    "a green triangle rotates while a yellow star moves left",
    "a small purple square moves up, then it shrinks",
]


def build_app(service: DemoService, page: PageOptions | None = None) -> gr.Blocks:
    """The demo's Blocks, queued (``page``: the controls' start and the queue's bounds; default ``PageOptions()``);
    launch it with ``launch(app, ...)``."""
    page = page or PageOptions()
    limits, handlers = service.limits, _Handlers(service)
    engine = service.engine
    start = engine.start(page.steps, page.guidance, page.dsg_guidance)  # the model's own, unless the page sets them
    uploads = UploadLimits()
    blocks = {"delete_cache": (uploads.sweep_every_s, uploads.max_age_s), **_blocks_style()}
    with gr.Blocks(title=f"{engine.title} demo", analytics_enabled=False, **blocks) as app:
        gr.Markdown(f"# {engine.title}\nText → **dynamic scene graph** (editable) → video.")
        if page.random_weights:
            gr.Markdown("**Note:** this model has **random weights** (not trained): its videos are noise-like.")
        with gr.Row():
            prompt = gr.Textbox(label="Prompt", elem_id="prompt", max_length=limits.max_prompt_chars, scale=4)
            plan_button = gr.Button("Plan", variant="primary", elem_id="plan-button", scale=1)
        gr.Examples(EXAMPLES, inputs=[prompt], label="Examples")
        with gr.Accordion("Planner", open=False):
            backend = gr.Radio(list(PLANNERS), value="rules", label="Planner", elem_id="planner")
            base_url = gr.Textbox(
                value=service.trusted_url or "",
                label="OpenAI-compatible endpoint (empty: OpenAI)",
                info=f"The server's API key (${service.api_key_env}) is sent only to "
                f"{service.trusted_url or 'OpenAI'}; other endpoints get no key.",
            )
            model = gr.Textbox(value=page.planner_model or "", label="Model served by the endpoint")
        with gr.Row():
            with gr.Column(scale=1):
                plan_text = gr.Textbox(
                    label="Plan: the DSG as JSON (or the paper's tuple text); edit it, then Check or Generate",
                    lines=12, max_lines=20, elem_id="plan", max_length=limits.max_plan_chars,
                )  # fmt: skip
                check_button = gr.Button("Check plan", elem_id="check-button")
                plan_status = gr.Markdown(elem_id="plan-status")
            with gr.Column(scale=1):
                boxes = gr.Image(label="Boxes over time", type="filepath", interactive=False, elem_id="boxes")
                gr.Markdown(
                    "The boxes the video follows: the plan's own, else imagined with the **Seed** below "
                    "(none for a model without layout maps, which follows no boxes)."
                )
        timeline = gr.Image(label="The plan over time", type="filepath", interactive=False, elem_id="timeline")
        with gr.Row():
            steps = gr.Slider(1, limits.max_steps, value=min(start.steps, limits.max_steps), step=1, label="Steps")
            guidance = gr.Slider(0, limits.max_guidance, value=start.guidance, step=0.5, label="Text guidance")
            dsg_guidance = gr.Slider(
                0, limits.max_guidance, value=start.plan_scale, step=0.5, label=engine.plan_scale_label,
                interactive=not engine.plan_scale_fixed,
            )  # fmt: skip
            frames = gr.Slider(
                engine.frames.first, limits.max_frames, value=engine.default_frames, step=engine.frames.step,
                label="Frames",
            )  # fmt: skip
            seed = gr.Number(value=0, precision=0, minimum=0, label="Seed")
        generate_button = gr.Button("Generate", variant="primary", elem_id="generate-button")
        with gr.Row():
            with gr.Column():
                video = gr.Video(label="Video", elem_id="video", autoplay=True, loop=True, interactive=False)
                with gr.Row():
                    downloads = [
                        gr.DownloadButton(f"Download {kind}", elem_id=f"download-{name}", interactive=False, size="sm")
                        for name, kind in (("mp4", "mp4"), ("gif", "GIF"), ("json", "DSG JSON"))
                    ]
                video_status = gr.Markdown(elem_id="video-status")
            used = gr.Code(label="The DSG used", language="json", elem_id="dsg-used", interactive=False, max_lines=22)

        planner_inputs = [backend, base_url, model]
        plan_outputs = [plan_text, timeline, boxes, plan_status]
        plan_event: dict[str, Any] = dict(concurrency_limit=page.concurrency, concurrency_id="plan")
        plan_inputs = [prompt, *planner_inputs, seed]
        plan_button.click(handlers.plan, plan_inputs, plan_outputs, api_name="plan", **plan_event)
        prompt.submit(handlers.plan, plan_inputs, plan_outputs, **plan_event)
        check_button.click(
            handlers.check, [plan_text, prompt, seed], [timeline, boxes, plan_status], api_name="check", **plan_event
        )
        generate_button.click(
            handlers.generate,
            [prompt, plan_text, steps, guidance, dsg_guidance, frames, seed, *planner_inputs],
            [video, used, *downloads, video_status, boxes],
            api_name="generate", concurrency_limit=page.concurrency, concurrency_id="generate",
        )  # fmt: skip
    return app.queue(max_size=page.queue_size, default_concurrency_limit=page.concurrency)


class _Handlers:
    """What the page's events call: ``DemoService`` calls with their errors turned into page messages."""

    def __init__(self, service: DemoService) -> None:
        self.service = service

    def plan(self, prompt: str, backend: str, url: str, model: str, seed: float = 0) -> tuple[Any, Any, Any, str]:
        """Plan the prompt: the plan to edit, its timeline, its boxes and a status line (an error keeps the old
        plan)."""
        try:
            result = self.service.plan(prompt, backend, url, model, seed=_layout_seed(seed))
        except DysenError as err:
            return gr.skip(), gr.skip(), gr.skip(), _error(err)
        return show_plan(result.dsg), str(result.timeline), _path(result.boxes), _ok(result.summary)

    def check(self, plan: str, prompt: str, seed: float = 0) -> tuple[Any, Any, str]:
        """Validate an edited plan: its new timeline and boxes and a status line that says what is wrong, if
        anything."""
        try:
            result = self.service.check(plan, prompt, seed=_layout_seed(seed))
        except DysenError as err:
            return gr.skip(), gr.skip(), _error(err)
        return str(result.timeline), _path(result.boxes), _ok(result.summary)

    def generate(
        self, prompt: str, plan: str, steps: float, guidance: float, dsg_guidance: float, frames: float, seed: float,
        backend: str, url: str, model: str, progress: gr.Progress = _TRACK_TQDM,
    ) -> tuple[Any, ...]:  # fmt: skip
        """Render the (edited) plan, or the planned prompt when the plan is empty; errors pop up on the page."""
        service = self.service
        try:
            settings = check_settings(
                steps, frames, seed, guidance, dsg_guidance, frames_rule=service.engine.frames,
                limits=service.limits,
            )  # fmt: skip
            out = service.generate(prompt, plan, settings, backend=backend, base_url=url, model=model)
        except DysenError as err:
            raise gr.Error(str(err), print_exception=False) from None
        files = [gr.DownloadButton(value=str(path), interactive=True) for path in (out.mp4, out.gif, out.dsg_json)]
        return (str(out.mp4), show_plan(out.dsg), *files, _ok(out.summary), _path(out.boxes))


def _layout_seed(seed: float | None) -> int:
    """The page's seed as the layout's (0 when the field holds no whole number in range: Generate says why)."""
    try:
        value = int(seed)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return 0
    return value if 0 <= value < 2**32 and value == seed else 0


def _path(path: Any) -> str | None:
    return None if path is None else str(path)


def _ok(text: str) -> str:
    return f"**OK**: {text}"


def _error(err: Exception) -> str:
    return f"**Error**: {err}"


def launch(
    app: gr.Blocks, service: DemoService, *, host: str = "127.0.0.1", port: int | None = None, share: bool = False,
    block: bool = True,
) -> str:  # fmt: skip
    """Serve ``app`` (blocking unless ``block`` is False); returns the local URL. Uploads are capped and Gradio's
    cache is swept (``UploadLimits``); ``keep_gradio_cache_in`` puts that cache in the workdir."""
    kwargs: dict[str, Any] = dict(
        server_name=host, server_port=port, share=share, prevent_thread_lock=not block, quiet=not block,
        ssr_mode=False, show_error=True, **launch_settings(service.workdir),
    )  # fmt: skip
    if _STYLE_AT_LAUNCH:
        kwargs.update(_style())
    _, local_url, _ = app.launch(**kwargs)
    return str(local_url)


def launch_settings(workdir: Path, uploads: UploadLimits | None = None) -> dict[str, Any]:
    """The upload and file-serving arguments of ``Blocks.launch``: only ``workdir`` is served, uploads are capped."""
    uploads = uploads or UploadLimits()
    return {"allowed_paths": [str(workdir)], "max_file_size": uploads.max_file_bytes}


def keep_gradio_cache_in(workdir: Path) -> Path:
    """Put Gradio's cache (uploads, the copies of outputs it serves) in ``workdir``, not the system's temp folder,
    for this process: ``GRADIO_TEMP_DIR``, which Gradio reads when it builds an app, its server and each file it
    serves, so call it before ``build_app`` (``dysen demo`` does)."""
    folder = workdir / UploadLimits().folder
    folder.mkdir(parents=True, exist_ok=True)
    os.environ["GRADIO_TEMP_DIR"] = str(folder)
    return folder


# Gradio 6 takes the theme at launch; Gradio 5 in the Blocks constructor.
_STYLE_AT_LAUNCH = "theme" in inspect.signature(gr.Blocks.launch).parameters


def _style() -> dict[str, Any]:
    theme = gr.themes.Default(
        font=["system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"]
    )  # the default fonts come from Google Fonts: the page must load nothing from outside
    return {"theme": theme, "css": "#video video { image-rendering: pixelated; min-height: 256px; }"}


def _blocks_style() -> dict[str, Any]:
    return {} if _STYLE_AT_LAUNCH else _style()
