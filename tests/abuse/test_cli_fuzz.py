"""Fuzz the CLI's argument space (issue 22): ``generate`` (a tiny model folder saved here, few steps), ``plan`` and
``dsg validate`` with random values — numbers with nan/inf/huge/negative, odd strings, missing files, folders as
outputs. Every run ends in exit 0, or in a non-zero exit whose last stderr line is a one-line ``dysen`` error:
never a traceback, never a partial output file. In-process through ``dysen.cli.main``."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dysen.cli import main
from pipeline_fixtures import TINY, HashTextEncoder

FUZZ = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)

NUMBERS = st.one_of(
    st.integers(-5, 5),
    st.sampled_from([10**9, 2**63, -(2**63), 10**400]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["nan", "inf", "-inf", "1e400", "0x10", "", " ", "1_000", "abc", "٣", "1.5"]),
).map(str)
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40)
OUTPUTS = st.sampled_from(["v.gif", "sub/dir/v.mp4", "v.txt", ".", "existing_dir", "", "v.gif/x.gif"])
SEEDS = st.integers(0, 2**63 - 1).map(str)


def mostly(valid: st.SearchStrategy[str], bad: st.SearchStrategy[str] = NUMBERS) -> st.SearchStrategy[str]:
    """``valid`` three times in four, so that whole commands often pass the flags and run."""
    return st.one_of(valid, valid, valid, bad)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A tiny random pipeline folder (the pipeline tests' TINY), and the hash text encoder for it."""
    from dysen.pipeline import DysenVDMPipeline
    from dysen.planner.rules import RulesPlanner

    folder = tmp_path_factory.mktemp("fuzz") / "model"
    DysenVDMPipeline.from_config(TINY, planner=RulesPlanner(), text_encoder=HashTextEncoder()).save_pretrained(folder)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("dysen.pipeline.build_text_encoder", lambda spec: HashTextEncoder())
        yield folder


@contextlib.contextmanager
def _workdir() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="dysen-fuzz-"))
    (folder / "existing_dir").mkdir()
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _run(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as exit:  # argparse's usage errors
            code = exit.code if isinstance(exit.code, int) else 2
    return code, err.getvalue()


def _check(argv: list[str], work: Path, outputs: list[Path], before: set[Path]) -> int:
    code, err = _run(argv)
    assert "Traceback" not in err, f"{argv}: {err[-3000:]}"
    if code != 0:
        last = err.strip().splitlines()[-1] if err.strip() else ""
        assert last.startswith("dysen") and "error:" in last, f"{argv} -> {code}: {err[-2000:]!r}"
        new = {p for p in work.rglob("*") if p.is_file()} - before
        assert not new, f"{argv} failed ({last}) but left {sorted(map(str, new))}"
    else:
        assert all(p.is_file() for p in outputs), f"{argv} exited 0 without writing {outputs}"
    return code


@FUZZ
@given(
    steps=mostly(st.integers(1, 3).map(str)),
    seed=mostly(SEEDS),
    frames=mostly(st.none(), st.sampled_from(["-4", "0", "1", "8", "nan", "1e9", str(10**9)])),
    guidance=mostly(st.none()),
    dsg_guidance=mostly(st.none()),
    eta=mostly(st.none()),
    out=mostly(st.just("v.gif"), OUTPUTS),
    prompt=mostly(st.just("a red circle moves right"), TEXT),
)
@example(steps="2", seed="0", frames=None, guidance=None, dsg_guidance=None, eta=None, out="v.gif", prompt="a ball")
@example(steps="1", seed=str(2**63 - 1), frames="8", guidance="1e300", dsg_guidance="-1e300", eta="0", out="sub/v.mp4",
         prompt="a red circle moves right")  # fmt: skip
def test_generate_fuzz(model: Path, steps, seed, frames, guidance, dsg_guidance, eta, out, prompt) -> None:
    if steps.strip().lstrip("-").isdigit() and int(steps) > 3:
        steps = "3"  # many steps are legal but slow: the bound itself is tested by 1001 and 10**9 below
    with _workdir() as work:
        target = work / out if out else Path(out)
        argv = ["generate", "--model", str(model), f"--out={target}", f"--steps={steps}", f"--seed={seed}"]
        for flag, value in (("--frames", frames), ("--guidance", guidance), ("--dsg-guidance", dsg_guidance),
                            ("--eta", eta)):  # fmt: skip
            if value is not None:
                argv.append(f"{flag}={value}")  # '--flag=-4': a negative value is not taken for a flag
        argv += ["--", prompt]
        _check(argv, work, [target], {p for p in work.rglob("*") if p.is_file()})


@pytest.mark.parametrize("steps", ["1001", str(10**9)])
def test_generate_too_many_steps_is_one_line(model: Path, steps: str) -> None:
    with _workdir() as work:
        code = _check(["generate", "hi", "--model", str(model), "--out", str(work / "v.gif"), "--steps", steps],
                      work, [], set())  # fmt: skip
        assert code != 0


@FUZZ
@given(
    prompt=mostly(st.just("a blue square jumps"), TEXT),
    out=mostly(st.none(), OUTPUTS),
    layout=mostly(st.one_of(st.none(), SEEDS)),
    fmt=mostly(st.sampled_from(["tree", "text", "json"]), st.just("yaml")),
    timeout=mostly(st.none()),
)
def test_plan_fuzz(prompt: str, out, layout, fmt: str, timeout) -> None:
    with _workdir() as work:
        argv, outputs = ["plan", f"--format={fmt}"], []
        if out is not None:
            target = work / out if out else Path(out)
            argv.append(f"--out={target}")
            outputs.append(target)
        if layout is not None:
            argv.append(f"--layout={layout}")
        if timeout is not None:
            argv.append(f"--timeout={timeout}")
        argv += ["--", prompt]  # a prompt that starts with '-' is still the prompt
        _check(argv, work, outputs, {p for p in work.rglob("*") if p.is_file()})


JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), TEXT),
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(TEXT, children, max_size=4)),
    max_leaves=20,
)
EVENT = st.fixed_dictionaries({
    "agent": TEXT, "predicate": TEXT, "start": st.integers(-10, 10**30), "end": st.integers(-10, 10**30),
})  # fmt: skip


def _dsg_file(kind: str, data: object, work: Path) -> Path:
    path = work / ("dsg.jsonl" if kind == "jsonl" else "dsg.json" if kind != "text" else "dsg.txt")
    if kind == "missing":
        return work / "missing.json"
    if kind == "folder":
        return work / "existing_dir"
    if kind == "deep":
        path.write_text("[" * 50_000 + "]" * 50_000)
    elif kind == "huge-int":
        path.write_text('{"events": [{"agent": "a", "predicate": "moves", "start": 0, "end": ' + "9" * 5000 + "}]}")
    elif kind == "binary":
        path.write_bytes(bytes(range(256)) * 3)
    elif kind == "jsonl":
        path.write_text("\n".join(json.dumps(d) for d in (data if isinstance(data, list) else [data])) + "\n")
    elif kind == "text":
        path.write_text(str(data))
    else:
        path.write_text(json.dumps(data))
    return path


@FUZZ
@given(
    kind=st.sampled_from(["json", "jsonl", "text", "missing", "folder", "deep", "huge-int", "binary", "events"]),
    data=JSON,
    events=st.lists(EVENT, max_size=4),
)
def test_dsg_validate_fuzz(kind: str, data: object, events: list) -> None:
    with _workdir() as work:
        payload = {"events": events} if kind == "events" else data
        path = _dsg_file("json" if kind == "events" else kind, payload, work)
        _check(["dsg", "validate", str(path)], work, [], {p for p in work.rglob("*") if p.is_file()})
