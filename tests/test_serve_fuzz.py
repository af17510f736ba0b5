"""Bounded fuzz of the real app (tone double behind it): malformed JSON, wrong types, NaN/inf/huge
numbers, odd unicode, oversized input, foreign Content-Types and Host headers. Never a 5xx, never an
exception out of the app, never an error logged; OpenAI's error shape for every refusal.

Bounded: a fixed number of derandomized examples (the same every run), each one request.
"""
from __future__ import annotations

import json
import logging

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from serve_double import ToneSynthesizer

from codectts.serve import create_app

SPEECH = "/v1/audio/speech"
MAX_CHARS = 120  # keeps accepted requests to ~1 s of tone
EXAMPLES = 400
REFUSALS = {400, 404, 413, 415, 421}
FIELDS = ["model", "input", "voice", "response_format", "speed", "stream_format", "stream", "instructions",
          "temperature", "top_k", "top_p", "seed"]
NUMERIC = ["speed", "temperature", "top_k", "top_p", "seed"]

# Every code point, lone surrogates included (JSON can carry them as \ud800 escapes).
odd_text = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF), max_size=MAX_CHARS + 10)
tricky_text = st.sampled_from(["", " ", "\u200b", "\ufeff", "\u0301\u0301", "\U0001F600" * 3, "A\u0000B", "\ud83d",
                               "e\u0301", "\u202eabc", "1/0", "$1,000.50", "Dr. St. 3rd", "\u2028\u2029", "ǅ" * 5,
                               "a" * MAX_CHARS, "a" * (MAX_CHARS + 1), "long " * 2000])
scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                    st.floats(allow_nan=True, allow_infinity=True), odd_text, tricky_text)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(odd_text, inner, max_size=3),
                      max_leaves=6)
good = {"input": st.one_of(tricky_text, odd_text, st.just("Hello world.")),
        "voice": st.sampled_from(["tone", "Tone", "tone ", "alloy", "nova", ""]),
        "model": st.sampled_from(["codectts", "tts-1", "x"]),
        "response_format": st.sampled_from(["wav", "pcm", "mp3", "opus", "flac", "aac", "WAV", ""]),
        "speed": st.floats(0.1, 5.0),
        "stream": st.booleans(),
        "stream_format": st.sampled_from(["audio", "sse", "SSE"])}
plausible = st.fixed_dictionaries({"input": good["input"]},
                                  optional={k: v for k, v in good.items() if k != "input"})
anything = st.dictionaries(st.one_of(st.sampled_from(FIELDS), odd_text), values, max_size=6)
# Number tokens json.dumps never writes: non-finite literals, overflowing exponents, 5,000-digit integers.
raw_numbers = st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1e-400", "-0", "0.0",
                               "1" + "0" * 5000, "-" + "9" * 400, "1.5", "3", "true", "null", '"1"'])
raw_numeric = st.tuples(st.sampled_from(NUMERIC), raw_numbers).map(
    lambda t: f'{{"input": "Hello world.", "response_format": "pcm", "{t[0]}": {t[1]}}}'.encode())
bodies = st.one_of(
    st.binary(max_size=200),
    plausible.map(lambda d: json.dumps(d).encode()),
    anything.map(lambda d: json.dumps(d, allow_nan=True).encode()),
    values.map(lambda v: json.dumps(v, allow_nan=True).encode()),
    plausible.map(lambda d: json.dumps(d, ensure_ascii=False).encode("utf-8", "surrogatepass")),
    st.tuples(plausible, st.integers(1, 40)).map(lambda t: json.dumps(t[0]).encode()[:-t[1]]),  # cut short
    raw_numeric,
    st.just(b'{"input": "hi", "x": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"),  # nested past the recursion limit
)
content_types = st.sampled_from(["application/json"] * 6 + ["application/json; charset=utf-8", "text/plain", "",
                                                            "application/x-www-form-urlencoded"])
hosts = st.sampled_from(["localhost"] * 6 + ["127.0.0.1:8000", "[::1]:8000", "evil.example", "localhost.evil.example"])


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.mark.slow  # 400 requests: 22 s on the shared 2-core machine at load average 14
def test_no_request_gets_a_5xx_or_raises():
    errors = _Errors()
    logging.getLogger("codectts.serve").addHandler(errors)
    # raise_server_exceptions: an exception escaping the app fails the test even if a 500 was sent.
    client = TestClient(create_app({"tone": ToneSynthesizer(record_calls=False)}, max_input_chars=MAX_CHARS),
                        base_url="http://localhost")
    seen: set[int] = set()

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(body=bodies, content_type=content_types, host=hosts)
    def check(body: bytes, content_type: str, host: str) -> None:
        headers = {"host": host, **({"content-type": content_type} if content_type else {})}
        r = client.post(SPEECH, content=body, headers=headers)
        seen.add(r.status_code)
        assert r.status_code == 200 or r.status_code in REFUSALS, (r.status_code, body[:200], r.text[:300])
        if r.status_code == 200:
            assert r.content and r.headers["content-type"].startswith(("audio/", "text/event-stream"))
            if r.headers["content-type"].startswith("text/event-stream"):  # SSE ends with done, not an error
                assert '"speech.audio.done"' in r.text.rsplit("data: ", 1)[-1]
        else:
            err = r.json()["error"]
            assert isinstance(err["message"], str) and err["code"] and "Traceback" not in r.text

    try:
        with client:
            check()
    finally:
        logging.getLogger("codectts.serve").removeHandler(errors)
    assert not errors.records, [r.getMessage() for r in errors.records[:3]]
    assert {200, 400, 415, 421} <= seen  # the strategies reached every side of the checks
