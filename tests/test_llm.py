"""The LLM script provider against a real loopback OpenAI-compatible server, through the real openai client."""

from __future__ import annotations

import dataclasses
import json
import logging
import pickle
import threading
import time
from pathlib import Path

import pytest
from llm_server import Call, LLMServer, Reply, answer, candidates_of, error, good, good_answer, sequence, steps_for

from actalign.errors import InputError, ItemError
from actalign.llm import (
    InvalidAnswerError,
    LLMRequestError,
    LLMSettings,
    OpenAIScriptProvider,
    RateLimiter,
    RequestLimits,
    builtin_templates,
    load_template,
    plan_requests,
)
from actalign.llm.validate import AnswerParseError, AnswerValidationError, match_candidates, parse_json_answer, validate_answer
from actalign.scripts import make_provider

SECRET = "sk-test-SECRET-0123456789abcdef"
SKATING = ["Sit spin", "Biellmann spin", "Camel spin"]  # sorted in prompts: Biellmann, Camel, Sit


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    return SECRET


def fast(server: LLMServer, **overrides) -> LLMSettings:
    """Settings for tests: the loopback server, small timeouts and backoffs, no rate cap."""
    values = dict(
        base_url=server.base_url, timeout=2.0, max_attempts=3, backoff_initial=0.01, backoff_max=0.05,
        requests_per_minute=None, max_concurrency=4,
    )
    return LLMSettings(**{**values, **overrides})


def one_question(provider: OpenAIScriptProvider, actions=SKATING, domain="figure skating"):
    (request,) = provider.requests_for([(domain, actions)])
    return request


# --- a good answer --------------------------------------------------------------------------------


def test_question_request_returns_every_candidates_script_with_its_metadata():
    with LLMServer(good(5)) as server:
        provider = OpenAIScriptProvider(fast(server))
        request = one_question(provider)
        scripts = provider.generate(request)
    assert request.actions == ("Biellmann spin", "Camel spin", "Sit spin")  # canonical (sorted) order
    assert set(scripts) == set(SKATING)
    (call,) = server.calls
    for action, script in scripts.items():
        assert script.steps == tuple(steps_for(action, 5))
        assert script.key == request.key_of(action) and script.request_key == request.key
        assert (script.provider, script.model, script.response_model) == ("openai", "gpt-4o-2024-08-06", "gpt-4o-2024-08-06-served")
        assert (script.template, script.template_version) == ("context-rich", 1)
        assert script.template_hash == provider.template.template_hash
        assert (script.prompt_tokens, script.completion_tokens, script.requests) == (120, 80, 1)
        assert script.response_format == "json_schema"
        assert json.loads(script.raw_response) == json.loads(good_answer(call, 5))
    body = call.body
    assert (body["model"], body["temperature"], body["seed"]) == ("gpt-4o-2024-08-06", 0.2, 1)
    assert body["response_format"]["type"] == "json_schema" and body["response_format"]["json_schema"]["strict"] is True
    prompt = call.first_user
    assert "chronological order" in prompt and "figure skating" in prompt
    assert "1. Biellmann spin\n2. Camel spin\n3. Sit spin" in prompt
    assert "between 4 and 10" in prompt


def test_renamed_reordered_recased_and_abbreviated_candidates_map_back_to_their_own_index():
    actions = ["Double Axel", "Biellmann spin", "Camel spin", "Flying sit spin", "Layback spin"]

    def renamed(call: Call) -> Reply:
        listed = candidates_of(call)  # Biellmann spin, Camel spin, Double Axel, Flying sit spin, Layback spin
        assert listed == sorted(actions, key=str.casefold)
        return Reply(
            answer(
                [
                    {"action": "Lay-back spin", "steps": steps_for("Layback spin")},  # no index: normalised name
                    {"action": "DOUBLE AXEL", "steps": steps_for("Double Axel")},  # re-cased, no index
                    {"index": 1, "action": "Flying sit spin", "steps": steps_for("Flying sit spin")},  # index conflicts with an exact name
                    {"index": 2, "action": "Camel", "steps": steps_for("Camel spin")},  # renamed, index right
                    {"action": "Biellman spinn", "steps": steps_for("Biellmann spin")},  # misspelt: fuzzy
                ]
            )
        )

    with LLMServer(renamed) as server:
        provider = OpenAIScriptProvider(fast(server))
        scripts = provider.generate(one_question(provider, actions))
    assert len(server.calls) == 1  # no follow-up was needed
    for action in actions:
        assert scripts[action].steps == tuple(steps_for(action)), action


def test_malformed_json_is_repaired_with_the_parse_error_sent_back():
    bad = 'Here you go: {"scripts": [{"index": 1, "action": "Biellmann spin", "steps": ["a", "b"'
    with LLMServer(sequence(Reply(bad), good(5))) as server:
        provider = OpenAIScriptProvider(fast(server))
        scripts = provider.generate(one_question(provider))
    assert len(server.calls) == 2
    follow_up = server.calls[1].messages
    assert follow_up[-2] == {"role": "assistant", "content": bad}
    assert "could not be parsed" in follow_up[-1]["content"] and "not valid JSON" in follow_up[-1]["content"]
    assert all(script.requests == 2 and script.prompt_tokens == 240 for script in scripts.values())


def test_a_missing_candidate_is_asked_for_again_with_the_validation_error():
    def missing_camel(call: Call) -> Reply:
        entries = json.loads(good_answer(call))["scripts"]
        return Reply(answer([entry for entry in entries if entry["action"] != "Camel spin"]))

    with LLMServer(sequence(missing_camel, good(5))) as server:
        provider = OpenAIScriptProvider(fast(server))
        scripts = provider.generate(one_question(provider))
    assert len(server.calls) == 2
    follow_up = server.calls[1].last_user
    assert "candidate 2 ('Camel spin') has no script" in follow_up
    assert "1. Biellmann spin\n2. Camel spin\n3. Sit spin" in follow_up  # the list again, with its numbers
    assert scripts["Camel spin"].steps == tuple(steps_for("Camel spin"))


def test_a_candidate_that_stays_missing_fails_the_question_and_keeps_the_raw_answers():
    def missing_camel(call: Call) -> Reply:
        entries = json.loads(good_answer(call))["scripts"]
        return Reply(answer([entry for entry in entries if entry["action"] != "Camel spin"]))

    with LLMServer(missing_camel) as server:
        provider = OpenAIScriptProvider(fast(server, max_followups=2))
        request = one_question(provider)
        with pytest.raises(InvalidAnswerError) as caught:
            provider.generate(request)
    assert len(server.calls) == 3  # the question, then two follow-ups
    exc = caught.value
    assert isinstance(exc, ItemError) and exc.error_class == "InvalidAnswerError"
    assert "Camel spin" in str(exc) and exc.request_key == request.key and exc.requests == 3
    assert len(exc.raw_answers) == 3 and exc.raw_answer == exc.raw_answers[-1]
    assert {e["action"] for e in json.loads(exc.raw_answer)["scripts"]} == {"Biellmann spin", "Sit spin"}


def test_step_count_is_checked_against_the_template_bounds():
    with LLMServer(sequence(good(9), good(10))) as server:
        provider = OpenAIScriptProvider(fast(server), "short-fixed")
        scripts = provider.generate(one_question(provider))
    assert len(server.calls) == 2
    assert "exactly 10 steps of 2-3 words" in server.calls[0].first_user
    assert "has 9 steps; it needs exactly 10" in server.calls[1].last_user
    assert all(len(script.steps) == 10 for script in scripts.values())


def test_duplicate_and_empty_steps_are_sent_back():
    def bad_steps(call: Call) -> Reply:
        entries = json.loads(good_answer(call))["scripts"]
        entries[0]["steps"] = ["glide forward", "Glide  forward", "spin", "  ", "pose"]
        return Reply(answer(entries))

    with LLMServer(sequence(bad_steps, good(5))) as server:
        provider = OpenAIScriptProvider(fast(server))
        provider.generate(one_question(provider))
    follow_up = server.calls[1].last_user
    assert "repeats the step 'Glide forward'" in follow_up and "has an empty step" in follow_up


# --- transient and permanent HTTP errors ------------------------------------------------------------


@pytest.mark.parametrize(("headers", "low", "high"), [({"Retry-After": "1"}, 0.95, 2.0), ({"retry-after-ms": "300"}, 0.28, 0.9)])
def test_429_retry_after_is_honoured(headers: dict[str, str], low: float, high: float):
    with LLMServer(sequence(error(429, "slow down", headers=headers), good())) as server:
        provider = OpenAIScriptProvider(fast(server))
        provider.generate(one_question(provider))
    assert len(server.calls) == 2
    waited = server.calls[1].time - server.calls[0].time
    assert low <= waited < high, waited  # the server's wait, not the 0.01 s backoff


def test_500_then_success_is_retried():
    with LLMServer(sequence(error(500, "boom"), error(503, "overloaded"), good())) as server:
        provider = OpenAIScriptProvider(fast(server))
        scripts = provider.generate(one_question(provider))
    assert len(server.calls) == 3 and len(scripts) == 3
    assert all(script.requests == 1 for script in scripts.values())  # answered (billed) requests only


def test_a_hang_beyond_the_timeout_is_retried_then_fails():
    with LLMServer(lambda call: Reply(good_answer(call), delay=5)) as server:
        provider = OpenAIScriptProvider(fast(server, timeout=0.3, max_attempts=2))
        started = time.monotonic()
        with pytest.raises(LLMRequestError) as caught:
            provider.generate(one_question(provider))
        elapsed = time.monotonic() - started
    assert len(server.calls) == 2 and elapsed < 2.5
    assert caught.value.transient and caught.value.status_code is None and caught.value.raw_answer is None
    assert "APITimeoutError" in str(caught.value)


def test_a_hang_once_then_an_answer_succeeds():
    with LLMServer(sequence(lambda call: Reply(good_answer(call), delay=5), good())) as server:
        provider = OpenAIScriptProvider(fast(server, timeout=0.3))
        assert len(provider.generate(one_question(provider))) == 3
    assert len(server.calls) == 2


@pytest.mark.parametrize(
    ("reply", "status"),
    [
        (error(401, f"Incorrect API key provided: {SECRET}", code="invalid_api_key"), 401),
        (error(404, "The model `gpt-4o-2024-08-06` does not exist", code="model_not_found"), 404),
        (error(400, "This model's maximum context length is 128000 tokens", param="messages"), 400),
        (error(429, "You exceeded your current quota", code="insufficient_quota"), 429),
    ],
)
def test_permanent_errors_are_not_retried(reply: Reply, status: int):
    with LLMServer(sequence(reply, good())) as server:
        provider = OpenAIScriptProvider(fast(server))
        with pytest.raises(LLMRequestError) as caught:
            provider.generate(one_question(provider))
    assert len(server.calls) == 1
    assert caught.value.status_code == status and not caught.value.transient
    assert SECRET not in str(caught.value)


# --- structured output fallback ---------------------------------------------------------------------


def test_a_server_rejecting_json_schema_gets_json_mode_and_that_is_remembered():
    def no_schema(call: Call) -> Reply:
        if call.format == "json_schema":
            return error(400, "response_format type json_schema is not supported", param="response_format")
        return Reply(good_answer(call))

    with LLMServer(no_schema) as server:
        first = OpenAIScriptProvider(fast(server)).generate(one_question(OpenAIScriptProvider(fast(server))))
        again = OpenAIScriptProvider(fast(server))  # a new provider, same base URL
        second = again.generate(one_question(again, ["Axel", "Lutz"]))
    assert [call.format for call in server.calls] == ["json_schema", "json_object", "json_object"]
    assert {s.response_format for s in [*first.values(), *second.values()]} == {"json_object"}


def test_a_server_with_no_json_modes_gets_plain_text_and_the_json_is_extracted():
    def text_only(call: Call) -> Reply:
        if call.format != "text":
            return error(422, f"unknown response_format {call.format}")
        return Reply("Certainly! Here are the scripts:\n```json\n" + good_answer(call) + "\n```\nHope this helps.")

    with LLMServer(text_only) as server:
        provider = OpenAIScriptProvider(fast(server))
        scripts = provider.generate(one_question(provider))
    assert [call.format for call in server.calls] == ["json_schema", "json_object", "text"]
    assert "response_format" not in server.calls[-1].body
    assert scripts["Sit spin"].steps == tuple(steps_for("Sit spin")) and scripts["Sit spin"].response_format == "text"


# --- the API key ----------------------------------------------------------------------------------


def test_the_api_key_is_sent_in_the_header_and_stored_nowhere(caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.DEBUG)

    def echo_key(call: Call) -> Reply:
        return Reply(f"my key is {SECRET}, no JSON")  # a server that echoes the key in its answer

    with LLMServer(sequence(Reply(status=500, error={"message": "oops"}), good())) as server:
        provider = OpenAIScriptProvider(fast(server))
        request = one_question(provider)
        scripts = provider.generate(request)
    with LLMServer(echo_key) as echo:
        echo_provider = OpenAIScriptProvider(fast(echo))
        with pytest.raises(InvalidAnswerError) as caught:
            echo_provider.generate(one_question(echo_provider))
    calls = server.calls + echo.calls
    assert all(call.headers["authorization"] == f"Bearer {SECRET}" for call in calls)
    stored = [
        json.dumps([call.body for call in calls]),
        json.dumps([dataclasses.asdict(script) for script in scripts.values()]),
        repr(scripts), repr(provider), json.dumps(provider.config()), request.key, *request.script_keys,
        str(caught.value), repr(caught.value.raw_answers), caplog.text, provider.settings.model_dump_json(),
    ]
    assert not [text for text in stored if SECRET in text]
    assert "[redacted]" in caught.value.raw_answer
    assert SECRET.encode() not in pickle.dumps(provider)  # the client (which holds the key) is not pickled
    assert pickle.loads(pickle.dumps(provider)).config() == provider.config()


def test_a_missing_key_for_a_remote_endpoint_says_what_to_set(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    provider = OpenAIScriptProvider(LLMSettings(base_url="https://llm.example.com/v1"))  # a dry run needs no key
    with pytest.raises(InputError, match="OPENAI_API_KEY.*ACTALIGN_LLM_API_KEY_ENV"):  # names only what exists
        provider.check_credentials()
    monkeypatch.setenv("ACTALIGN_LLM_API_KEY_ENV", "TEAM_LLM_API_KEY")
    with pytest.raises(InputError, match="TEAM_LLM_API_KEY"):
        OpenAIScriptProvider(LLMSettings()).generate(one_question(provider))
    monkeypatch.delenv("ACTALIGN_LLM_API_KEY_ENV")
    with LLMServer(good()) as server:  # a local server needs no key
        provider = OpenAIScriptProvider(fast(server))
        provider.check_credentials()
        provider.generate(one_question(provider))
    assert server.calls[0].headers["authorization"] == "Bearer no-key"


def test_azure_uses_the_deployment_path_and_its_own_key(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", SECRET)
    with LLMServer(good()) as server:
        settings = fast(server, api="azure", base_url=server.root_url, model="my-gpt4o")
        provider = OpenAIScriptProvider(settings)
        provider.generate(one_question(provider))
    (call,) = server.calls
    assert call.path.startswith("/openai/deployments/my-gpt4o/chat/completions?api-version=")
    assert call.headers["api-key"] == SECRET


# --- limits --------------------------------------------------------------------------------------


def test_rate_limiter_with_a_fake_clock():
    now, sleeps = [0.0], []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    limiter = RateLimiter(3, 60.0, clock=lambda: now[0], sleep=sleep)
    assert [limiter.acquire() for _ in range(3)] == [0.0, 0.0, 0.0]
    now[0] = 10.0
    assert limiter.acquire() == 50.0 and now[0] == 60.0  # waits for the first slot to leave the window
    assert limiter.acquire() == 0.0 and limiter.acquire() == 0.0  # the other two left at 60 too
    assert limiter.acquire() == 60.0 and sleeps == [50.0, 60.0]
    assert RateLimiter(None).acquire() == 0.0


def test_rate_limiter_across_threads_never_exceeds_its_rate():
    limiter, starts, lock = RateLimiter(2, 0.2), [], threading.Lock()

    def work() -> None:
        for _ in range(2):
            limiter.acquire()
            with lock:
                starts.append(time.monotonic())

    threads = [threading.Thread(target=work) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    starts.sort()
    assert len(starts) == 6 and 0.38 <= starts[-1] - starts[0] < 1.0
    assert all(starts[i + 2] - starts[i] >= 0.15 for i in range(4))  # never 3 within one window (some slack for slow threads)


def test_concurrency_limit_caps_requests_in_flight():
    with LLMServer(lambda call: Reply(good_answer(call), delay=0.15)) as server:
        provider = OpenAIScriptProvider(fast(server, granularity="class", max_concurrency=2))
        requests = provider.requests_for([("skating", ["A", "B", "C", "D", "E", "F"])])
        batch = provider.generate_many(requests, max_workers=6)
    assert len(server.calls) == 6 and not batch.failures and len(batch.scripts) == 6
    assert server.max_in_flight == 2


def test_request_limits_combine_both_limits():
    now, sleeps = [0.0], []
    limits = RequestLimits(1, None, rate_limiter=RateLimiter(2, 60.0, clock=lambda: now[0], sleep=lambda s: (sleeps.append(s), now.__setitem__(0, now[0] + s))))
    for _ in range(3):
        with limits.request():
            pass
    assert sleeps == [60.0]


# --- keys, dedup and the dry run ------------------------------------------------------------------


def test_script_keys_follow_what_the_script_depends_on_and_not_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    def key(settings: LLMSettings, action="Axel", candidates=("Axel", "Lutz"), prompt="context-rich") -> str:
        return OpenAIScriptProvider(settings, prompt).script_key("figure skating", action, candidates)

    base = LLMSettings(base_url="http://127.0.0.1:9/v1")
    reference = key(base)
    edited = tmp_path / "mine.yaml"
    edited.write_bytes(_template_bytes() + b"\n# edited\n")  # a comment changes the hash too
    changed = [
        base.model_copy(update={"temperature": 0.7}),
        base.model_copy(update={"model": "gpt-4o-2024-11-20"}),
        base.model_copy(update={"seed": 2}),
        base.model_copy(update={"base_url": "http://127.0.0.1:10/v1"}),
    ]
    templates = [key(base, prompt="short-fixed"), key(base, prompt=str(edited))]
    assert len({reference, *(key(s) for s in changed), *templates}) == 1 + len(changed) + len(templates)
    assert key(base, candidates=("Lutz", "Axel")) == reference  # order-free candidate set
    assert key(base, candidates=("Axel", "Flip")) != reference and key(base, candidates=None) != reference
    monkeypatch.setenv("OPENAI_API_KEY", "sk-another-key-entirely")
    same_host = base.model_copy(update={"base_url": "http://user:pw@127.0.0.1:9/other/path?api_key=x"})
    assert key(base) == reference and key(same_host) == reference  # neither the key nor credentials in the URL


def _template_bytes() -> bytes:
    import actalign

    return (Path(actalign.__file__).parent / "prompts" / "context-rich.yaml").read_bytes()


def test_plan_requests_counts_dedups_and_skips_stored_scripts():
    groups = [
        ("figure skating", ["Axel", "Lutz", "Flip"]),
        ("figure skating", ["Flip", "Axel", "Lutz"]),  # the same question, reordered
        ("figure skating", ["Axel", "Lutz", "Loop"]),
        ("diving", ["Axel"]),  # the same name in another domain is another class
    ]
    question = LLMSettings()
    plan = plan_requests(question, groups)
    assert (plan.groups, plan.requests, plan.stored, plan.to_send, plan.scripts) == (4, 3, 0, 3, 7)
    assert plan.prompt_tokens > 3 * 150 and plan.completion_tokens > 7 * 50 and plan.cost_usd > 0
    assert plan.describe().startswith("3 LLM request(s) to send for 7 script(s) with gpt-4o-2024-08-06")

    provider = OpenAIScriptProvider(question)
    stored = set(provider.requests_for(groups[:1])[0].script_keys) | {provider.requests_for(groups[2:3])[0].script_keys[0]}
    partial = plan_requests(provider, groups, have_key=stored.__contains__)
    assert (partial.requests, partial.stored, partial.to_send) == (3, 1, 2)  # a partly stored question is asked again

    per_class = LLMSettings(granularity="class")
    plan = plan_requests(per_class, groups)
    assert (plan.requests, plan.to_send, plan.scripts) == (5, 5, 5)  # Axel, Lutz, Flip, Loop; diving Axel
    class_provider = OpenAIScriptProvider(per_class)
    have = {class_provider.script_key("figure skating", "Axel"), class_provider.script_key("figure skating", "Lutz")}
    assert plan_requests(class_provider, groups, have_key=have.__contains__).to_send == 3
    # A one-candidate question is a per-class request: the same key and prompt in both granularities.
    (single,) = provider.requests_for([("diving", ["Axel"])])
    assert not single.per_question and single.key == class_provider.script_key("diving", "Axel")
    assert single.key == provider.script_key("diving", "Axel", ["Axel"])

    assert plan_requests(LLMSettings(model="some-local-model"), groups).cost_usd is None
    assert plan_requests(LLMSettings(model="llama3", base_url="http://localhost:11434/v1"), groups).cost_usd == 0.0
    cheaper = plan_requests(LLMSettings(model="gpt-4o-mini-2024-07-18"), groups)
    assert 0 < cheaper.cost_usd < plan_requests(question, groups).cost_usd


def test_class_granularity_generates_a_class_shared_by_questions_once():
    with LLMServer(good()) as server:
        provider = OpenAIScriptProvider(fast(server, granularity="class"))
        requests = provider.requests_for([("skating", ["Axel", "Lutz"]), ("skating", ["Lutz", "Flip"])])
        batch = provider.generate_many(requests)
    assert len(requests) == 3 and len(server.calls) == 3
    assert sorted(candidates_of(call)[0] for call in server.calls) == ["Axel", "Flip", "Lutz"]
    assert all("Action: " in call.first_user and "chronological order" in call.first_user for call in server.calls)
    assert all(request.key == request.script_keys[0] for request in requests)
    assert {script.action for scripts in batch.scripts.values() for script in scripts.values()} == {"Axel", "Lutz", "Flip"}


# --- the provider registry and the mix with hand-written steps --------------------------------------


def test_make_provider_builds_registered_providers():
    assert make_provider("openai").name == "openai" and make_provider("file").name == "file"
    with pytest.raises(InputError, match="unknown script provider"):
        make_provider("nope")


# --- templates and validation as plain functions ----------------------------------------------------


def test_templates_load_with_bounds_and_reject_unknown_placeholders(tmp_path: Path):
    assert {"context-rich", "short-fixed"} <= set(builtin_templates())
    rich, short = load_template("context-rich"), load_template("short-fixed")
    assert (rich.min_steps, rich.max_steps, short.min_steps, short.max_steps) == (4, 10, 10, 10)
    assert rich.template_hash != short.template_hash and len(rich.template_hash) == 16
    bad = tmp_path / "bad.yaml"
    bad.write_text(_template_bytes().decode().replace("Sport or activity: $domain", "Sport or activity: $sport", 1))
    with pytest.raises(InputError, match=r"\$sport|sport"):
        load_template(bad)
    with pytest.raises(InputError, match="unknown prompt template"):
        load_template("no-such-template")
    with pytest.raises(InputError, match="unknown prompt template"):
        OpenAIScriptProvider(LLMSettings(), "no-such-template")
    with pytest.raises(ValueError, match="http"):
        LLMSettings(base_url="localhost:8000/v1")


def test_a_template_edited_between_two_loads_gives_its_new_hash(tmp_path: Path):
    """Every reader of a run's template gets one parse, and an edit between runs is never served stale."""
    path = tmp_path / "mine.yaml"
    path.write_bytes(_template_bytes())
    first = load_template(path)
    assert load_template(str(path)) is first and first.path == str(path.resolve())
    path.write_bytes(_template_bytes().replace(b"Sport or activity", b"Activity or sport", 1))
    edited = load_template(path)
    assert edited.template_hash != first.template_hash and "Activity or sport" in edited.question + edited.single + edited.system
    assert load_template("context-rich").path.endswith("prompts/context-rich.yaml")


def test_parse_json_answer_finds_the_object():
    assert parse_json_answer('{"scripts": []}') == {"scripts": []}
    assert parse_json_answer('text\n```json\n{"scripts": [1]}\n```') == {"scripts": [1]}
    assert parse_json_answer('Sure: {"a": {"b": 2}} done') == {"a": {"b": 2}}
    for text in ("", None, "no json here", '{"a": '):
        with pytest.raises(AnswerParseError):
            parse_json_answer(text)


def test_matching_refuses_to_guess():
    actions = ["Double Axel", "Triple Axel", "Camel spin"]
    # "Axel" abbreviates two candidates and is not clearly closer to either: not assigned to the one left.
    assigned, problems = match_candidates(
        [{"action": "Double Axel"}, {"action": "Axel"}, {"index": 3, "action": "Camel spin"}], actions
    )
    assert assigned == {0: 0, 2: 2} and "'Axel' matches no candidate unambiguously" in problems[0]
    # Two answers for one candidate are reported, not handed to the other candidate.
    assigned, problems = match_candidates([{"action": "double axel"}, {"action": "DOUBLE AXEL"}, {"action": "Camel spin"}], actions)
    assert assigned == {0: 0, 2: 2} and "two scripts were given for candidate 1" in problems[0]
    # Numbers as strings; enumerators cleaned, but not numbers that belong to the step.
    steps = validate_answer(
        {"scripts": [{"index": "1", "action": "x", "steps": ["1. glide", "Step 2: jump", "2.5 somersaults", "3-point turn", "- land"]}]},
        ["Glide jump"], min_steps=2, max_steps=5, max_words=None,
    )
    assert steps == (("glide", "jump", "2.5 somersaults", "3-point turn", "land"),)
    # The common {"name": [steps]} variant of the answer.
    steps = validate_answer({"Camel spin": ["a", "b"], "Double axel": ["c", "d"]}, ["Double Axel", "Camel spin"], min_steps=2, max_steps=2, max_words=None)
    assert steps == (("c", "d"), ("a", "b"))
    with pytest.raises(AnswerValidationError, match="at most 3 are allowed"):
        validate_answer({"scripts": [{"index": 1, "action": "a", "steps": ["one two three four", "b"]}]}, ["a"], min_steps=1, max_steps=3, max_words=3)


def test_every_kind_of_class_text_has_one_prompt_template_setting():
    """A kind added to the classes without its template (or the reverse) would send the LLM no prompt for it."""
    from actalign.classes import TEXT_KINDS
    from actalign.config import Prompts

    assert tuple(Prompts.model_fields) == TEXT_KINDS
    assert all(load_template(template).name for template in Prompts().model_dump().values())
