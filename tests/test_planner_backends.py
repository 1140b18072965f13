"""LLM backends against a real local HTTP server: answers, retries, fallbacks, key hygiene, replay."""

from __future__ import annotations

import json
import logging
import random
import subprocess
import sys

import pytest

from dysen.errors import DysenError
from dysen.planner.backends import (
    ChatBackend,
    ChatMessage,
    LLMError,
    LLMSampling,
    OpenAIBackend,
    RecordingBackend,
    ReplayBackend,
)
from fake_llm_server import FakeLLMServer, Reply

MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "input: a red circle moves right"},
]
SCHEMA = {"title": "Action plan", "type": "object", "properties": {"events": {"type": "array"}}}
SECRET = "sk-test-SECRET-0123456789abcdef"


class FakeSleep:
    """Records requested waits instead of sleeping."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def make_backend(server: FakeLLMServer, sleep: FakeSleep, **kwargs) -> OpenAIBackend:
    options = {"max_retries": 5, "timeout_s": 5.0, "sleep": sleep, "rng": random.Random(0)} | kwargs
    return OpenAIBackend("fake-model", base_url=server.base_url, **options)


@pytest.fixture
def sleep() -> FakeSleep:
    return FakeSleep()


def test_valid_answer_is_returned_with_usage_and_paper_sampling(fake_llm, sleep):
    fake_llm.push(Reply("(circle, moves, right, (0v, 1v))", prompt_tokens=21, completion_tokens=9))
    backend = make_backend(fake_llm, sleep)
    assert isinstance(backend, ChatBackend)
    completion = backend.complete([ChatMessage(**m) for m in MESSAGES], sampling=LLMSampling())
    assert completion.text == "(circle, moves, right, (0v, 1v))"
    assert (completion.prompt_tokens, completion.completion_tokens, completion.attempts) == (21, 9, 1)
    assert not completion.cached and completion.model == "fake-model"
    body = fake_llm.requests[0].body
    assert body["messages"] == MESSAGES and body["model"] == "fake-model"
    assert (body["temperature"], body["max_tokens"]) == (0.0, 512)
    assert "response_format" not in body and "seed" not in body
    assert backend.stats.calls == 1 and backend.stats.prompt_tokens == 21 and backend.stats.retries == 0
    assert sleep.waits == []


def test_429_is_retried_once_and_retry_after_is_honoured(fake_llm, sleep):
    fake_llm.push(Reply("slow down", status=429, headers={"Retry-After": "2"}), Reply("done"))
    backend = make_backend(fake_llm, sleep)
    completion = backend.complete(MESSAGES)
    assert completion.text == "done" and completion.attempts == 2
    assert backend.stats.retries == 1 and len(fake_llm.requests) == 2
    assert sleep.waits == [2.0]


def test_server_errors_are_retried_with_bounded_jittered_backoff(fake_llm, sleep):
    fake_llm.push(*[Reply("boom", status=500)] * 3, Reply("finally"))
    backend = make_backend(fake_llm, sleep, backoff_base_s=1.0, backoff_max_s=3.0)
    completion = backend.complete(MESSAGES)
    assert completion.text == "finally" and completion.attempts == 4
    assert backend.stats.retries == 3 and backend.stats.failures == 0
    assert len(sleep.waits) == 3
    for retry, wait in enumerate(sleep.waits):
        assert 0.0 <= wait <= min(3.0, 2.0**retry)


def test_server_errors_beyond_max_retries_raise_stating_attempts(fake_llm, sleep):
    fake_llm.push(*[Reply("overloaded", status=503)] * 3)
    backend = make_backend(fake_llm, sleep, max_retries=2)
    with pytest.raises(LLMError, match=r"after 3 attempts: HTTP 503: overloaded") as info:
        backend.complete(MESSAGES)
    assert isinstance(info.value, DysenError)
    assert len(fake_llm.requests) == 3 and backend.stats.failures == 1 and backend.stats.retries == 2


def test_answer_slower_than_timeout_is_retried_then_fails(fake_llm, sleep):
    fake_llm.push(Reply("late", delay_s=3.0), Reply("late again", delay_s=3.0))
    backend = make_backend(fake_llm, sleep, timeout_s=0.3, max_retries=1)
    with pytest.raises(LLMError, match=r"after 2 attempts: no answer within 0.3 s"):
        backend.complete(MESSAGES)
    assert len(fake_llm.requests) == 2 and backend.stats.retries == 1


def test_unreachable_server_is_a_connection_error(sleep):
    server = FakeLLMServer()
    base_url = server.base_url
    server.stop()  # never served: the port is closed
    backend = OpenAIBackend("m", base_url=base_url, max_retries=1, sleep=sleep)
    with pytest.raises(LLMError, match="after 2 attempts: cannot connect"):
        backend.complete(MESSAGES)


def test_client_error_is_not_retried_and_carries_the_server_message(fake_llm, sleep):
    fake_llm.push(Reply("model 'fake-model' does not exist", status=404), Reply("unused"))
    backend = make_backend(fake_llm, sleep)
    with pytest.raises(LLMError, match="HTTP 404: model 'fake-model' does not exist") as info:
        backend.complete(MESSAGES)
    assert "attempts" not in str(info.value)
    assert len(fake_llm.requests) == 1 and sleep.waits == []


def test_bad_request_is_not_retried(fake_llm, sleep):
    fake_llm.push(Reply("messages[1].content is too long", status=400))
    with pytest.raises(LLMError, match="HTTP 400: messages"):
        make_backend(fake_llm, sleep).complete(MESSAGES)
    assert len(fake_llm.requests) == 1


def test_structured_output_sends_the_schema(fake_llm, sleep):
    fake_llm.push(Reply('{"events": []}'))
    completion = make_backend(fake_llm, sleep).complete(MESSAGES, json_schema=SCHEMA)
    assert json.loads(completion.text) == {"events": []}
    response_format = fake_llm.requests[0].body["response_format"]
    assert response_format == {
        "type": "json_schema",
        "json_schema": {"name": "Action_plan", "schema": SCHEMA, "strict": False},
    }


def test_rejected_response_format_falls_back_to_text_once_in_auto_mode(fake_llm, sleep):
    rejection = Reply("Unsupported parameter: 'response_format' of type json_schema", status=400)
    fake_llm.push(rejection, Reply("plain 1"), Reply("plain 2"))
    backend = make_backend(fake_llm, sleep)
    first = backend.complete(MESSAGES, json_schema=SCHEMA)
    second = backend.complete(MESSAGES, json_schema=SCHEMA)
    assert (first.text, first.attempts, second.text, second.attempts) == ("plain 1", 2, "plain 2", 1)
    assert ["response_format" in r.body for r in fake_llm.requests] == [True, False, False]
    assert backend.stats.retries == 0 and sleep.waits == []


def test_rejected_response_format_is_an_error_when_forced_on(fake_llm, sleep):
    fake_llm.push(Reply("response_format is not supported", status=400))
    with pytest.raises(LLMError, match="response_format is not supported"):
        make_backend(fake_llm, sleep, structured_output="on").complete(MESSAGES, json_schema=SCHEMA)
    assert len(fake_llm.requests) == 1


def test_structured_output_off_never_sends_the_schema(fake_llm, sleep):
    fake_llm.push(Reply("text"))
    make_backend(fake_llm, sleep, structured_output="off").complete(MESSAGES, json_schema=SCHEMA)
    assert "response_format" not in fake_llm.requests[0].body


def test_sampling_fields_are_sent(fake_llm, sleep):
    fake_llm.push(Reply("x"))
    sampling = LLMSampling(
        temperature=0.7, max_tokens=64, top_p=0.9, frequency_penalty=0.1, presence_penalty=0.1, seed=3
    )
    make_backend(fake_llm, sleep).complete(MESSAGES, sampling=sampling)
    body = fake_llm.requests[0].body
    assert {k: body[k] for k in ("temperature", "max_tokens", "top_p", "frequency_penalty", "seed")} == {
        "temperature": 0.7,
        "max_tokens": 64,
        "top_p": 0.9,
        "frequency_penalty": 0.1,
        "seed": 3,
    }


def test_api_key_is_sent_but_never_shown(fake_llm, sleep, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("DYSEN_TEST_KEY", SECRET)
    echo_500 = Reply(f"busy, key {SECRET}", status=500)
    fake_llm.push(Reply("fine"), Reply(f"invalid key {SECRET}", status=401), echo_500, echo_500)
    backend = make_backend(fake_llm, sleep, api_key_env="DYSEN_TEST_KEY", max_retries=1)
    backend.complete(MESSAGES)
    errors = []
    for _ in range(2):
        with pytest.raises(LLMError) as info:
            backend.complete(MESSAGES)
        errors.append(info.value)
    assert fake_llm.requests[0].headers["authorization"] == f"Bearer {SECRET}"
    assert all(err.__cause__ is None and err.__suppress_context__ for err in errors)
    shown = [repr(backend), str(backend), str(backend.stats), *caplog.messages]
    shown += [text for err in errors for text in (str(err), repr(err))]
    assert all(SECRET not in text for text in shown)
    assert "invalid key ***" in str(errors[0]) and "busy, key ***" in str(errors[1])
    assert any("retry 1/1" in message and "busy, key ***" in message for message in caplog.messages)


def test_importing_the_planner_loads_neither_openai_nor_torch():
    code = "import sys, dysen.planner, dysen.planner.backends; print(sorted({'openai', 'torch'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert result.stdout.strip() == "[]"


def test_missing_key_without_base_url_names_the_variable(monkeypatch):
    monkeypatch.delenv("DYSEN_NO_SUCH_KEY", raising=False)
    backend = OpenAIBackend("gpt-4o-mini", api_key_env="DYSEN_NO_SUCH_KEY")
    with pytest.raises(LLMError, match="set the environment variable DYSEN_NO_SUCH_KEY"):
        backend.complete(MESSAGES)


def test_local_server_needs_no_key(fake_llm, sleep, monkeypatch):
    monkeypatch.delenv("DYSEN_NO_SUCH_KEY", raising=False)
    fake_llm.push(Reply("local"))
    assert make_backend(fake_llm, sleep, api_key_env="DYSEN_NO_SUCH_KEY").complete(MESSAGES).text == "local"


@pytest.mark.parametrize(
    "messages",
    [[], "hello", [{"role": "robot", "content": "x"}], [{"role": "user"}], [{"role": "user", "content": 1}]],
)
def test_malformed_messages_are_rejected_before_any_request(fake_llm, sleep, messages):
    with pytest.raises(LLMError, match="message"):
        make_backend(fake_llm, sleep).complete(messages)
    assert fake_llm.requests == []


def test_invalid_settings_are_rejected():
    with pytest.raises(LLMError, match="structured_output"):
        OpenAIBackend("m", structured_output="sometimes")
    with pytest.raises(LLMError, match="max_tokens"):
        LLMSampling(max_tokens=0)


def test_recording_then_replay_answers_without_a_server(fake_llm, sleep, tmp_path):
    path = tmp_path / "answers.jsonl"
    fake_llm.push(Reply("plan A", prompt_tokens=5, completion_tokens=3), Reply('{"events": []}'))
    recorder = RecordingBackend(make_backend(fake_llm, sleep), path)
    assert recorder.complete(MESSAGES).text == "plan A"
    assert recorder.complete(MESSAGES, json_schema=SCHEMA).text == '{"events": []}'
    assert len(path.read_text().splitlines()) == 2

    replay = ReplayBackend(path)
    assert isinstance(replay, ChatBackend) and len(replay) == 2
    again = replay.complete([ChatMessage(**m) for m in MESSAGES])
    assert (again.text, again.prompt_tokens, again.completion_tokens) == ("plan A", 5, 3)
    assert again.cached and again.attempts == 0 and again.model == "fake-model"
    assert replay.complete(MESSAGES, json_schema=SCHEMA).text == '{"events": []}'
    assert len(fake_llm.requests) == 2
    with pytest.raises(LLMError, match=f"no recorded answer in {path}"):
        replay.complete(MESSAGES, sampling=LLMSampling(temperature=1.0))


def test_hand_written_replay_matches_messages_under_any_sampling(tmp_path):
    path = tmp_path / "hand.jsonl"
    path.write_text(json.dumps({"messages": MESSAGES, "text": "by hand"}) + "\n\n")
    replay = ReplayBackend(path, model="gpt-3.5-turbo")
    completion = replay.complete(MESSAGES, sampling=LLMSampling(temperature=0.5, seed=1))
    assert completion.text == "by hand" and completion.model == "gpt-3.5-turbo"


@pytest.mark.parametrize("content", ["not json\n", '{"key": "k"}\n', '{"text": "no key nor messages"}\n'])
def test_malformed_replay_file_names_file_and_line(tmp_path, content):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"key": "k", "text": "fine"}\n' + content)
    with pytest.raises(LLMError, match=f"{path}:2: not a replay record"):
        ReplayBackend(path)


def test_missing_replay_file_is_a_clear_error(tmp_path):
    with pytest.raises(LLMError, match="cannot read replay file .*missing.jsonl"):
        ReplayBackend(tmp_path / "missing.jsonl")
    binary = tmp_path / "binary.jsonl"
    binary.write_bytes(b"\xf1\xff\x00")
    with pytest.raises(LLMError, match="cannot read replay file .*binary.jsonl: it is not UTF-8"):
        ReplayBackend(binary)
