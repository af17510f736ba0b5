"""Fuzz /v1/audio/speech with malformed JSON, wrong types and odd unicode: never a 500, always
OpenAI's error shape when refused, audio when accepted."""
from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from serve_double import ToneSynthesizer

from codectts.serve import create_app

SPEECH = "/v1/audio/speech"
MAX_CHARS = 120  # keeps accepted requests to ~1 s of tone
REFUSALS = {400, 404, 413}
FIELDS = ["model", "input", "voice", "response_format", "speed", "stream_format", "stream", "instructions",
          "temperature", "top_k", "top_p", "seed"]

# Every code point, lone surrogates included (JSON can carry them as \ud800 escapes).
odd_text = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF), max_size=MAX_CHARS + 10)
tricky_text = st.sampled_from(["", " ", "\u200b", "\ufeff", "\u0301\u0301", "\U0001F600" * 3, "A\u0000B", "\ud83d",
                               "e\u0301", "\u202eabc", "1/0", "$1,000.50", "Dr. St. 3rd", "\u2028\u2029", "ǅ" * 5])
scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                    st.floats(allow_nan=True, allow_infinity=True), odd_text, tricky_text)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(odd_text, inner, max_size=3),
                      max_leaves=6)
good = {"input": st.one_of(tricky_text, odd_text, st.just("Hello world.")),
        "voice": st.sampled_from(["tone", "Tone", "tone ", "alloy", ""]),
        "model": st.sampled_from(["codectts", "tts-1", "x"]),
        "response_format": st.sampled_from(["wav", "pcm", "mp3", "opus", "flac", "aac", "WAV", ""]),
        "speed": st.floats(0.1, 5.0),
        "stream": st.booleans(),
        "stream_format": st.sampled_from(["audio", "sse", "SSE"])}
plausible = st.fixed_dictionaries({"input": good["input"]},
                                  optional={k: v for k, v in good.items() if k != "input"})
anything = st.dictionaries(st.one_of(st.sampled_from(FIELDS), odd_text), values, max_size=6)
bodies = st.one_of(
    st.binary(max_size=200),
    plausible.map(lambda d: json.dumps(d).encode()),
    anything.map(lambda d: json.dumps(d, allow_nan=True).encode()),
    values.map(lambda v: json.dumps(v, allow_nan=True).encode()),
    plausible.map(lambda d: json.dumps(d, ensure_ascii=False).encode("utf-8", "surrogatepass")),
    st.tuples(plausible, st.integers(1, 40)).map(lambda t: json.dumps(t[0]).encode()[:-t[1]]),  # cut short
)


@pytest.mark.slow
def test_no_request_body_gets_a_500():
    client = TestClient(create_app({"tone": ToneSynthesizer()}, max_input_chars=MAX_CHARS),
                        raise_server_exceptions=False)
    seen: set[int] = set()

    @settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(body=bodies, content_type=st.sampled_from(["application/json", "text/plain", ""]))
    def check(body: bytes, content_type: str) -> None:
        headers = {"content-type": content_type} if content_type else {}
        r = client.post(SPEECH, content=body, headers=headers)
        seen.add(r.status_code)
        assert r.status_code == 200 or r.status_code in REFUSALS, (r.status_code, body[:200], r.text[:300])
        if r.status_code == 200:
            assert r.content and r.headers["content-type"].startswith(("audio/", "text/event-stream"))
        else:
            err = r.json()["error"]
            assert isinstance(err["message"], str) and err["code"] and "Traceback" not in r.text

    check()
    assert 200 in seen and 400 in seen  # the strategy reached both sides of the validation
