"""The web page in a real headless browser (Debian chromium driven by playwright): load it, click
Play, see streamed audio bytes arrive and a wav download appear; at 1000 px a long voice description
does not push the page sideways."""
from __future__ import annotations

import base64
import io
import os

import pytest
import soundfile as sf
from serve_double import SECONDS_PER_CHAR, ToneSynthesizer, live_server

from codectts.serve import create_app

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
TEXT = "Streaming into the browser."
TIMEOUT_MS = 20_000
VIEWPORT_WIDTH = 1000
LONG_DESCRIPTION = ("A deliberately long description of this voice, the way a voice.json may carry one: who speaks, "
                    "the corpus, the hours of audio, the model size and its measured word error rate, " * 3).strip()

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(
        not os.path.exists(CHROMIUM),
        reason=f"{CHROMIUM} is absent (run `make browser` as root to install Debian chromium)",
    ),
]


def test_page_plays_streamed_audio_and_offers_a_download():
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    voices = {"tone": ToneSynthesizer(chunk_delay_s=0.02, description=LONG_DESCRIPTION),
              "slow": ToneSynthesizer("slow", 16000)}
    with live_server(create_app(voices)) as url, sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": VIEWPORT_WIDTH, "height": 800})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(url + "/", timeout=TIMEOUT_MS)
            page.wait_for_function("document.querySelectorAll('#voice option').length === 2", timeout=TIMEOUT_MS)
            assert page.locator("#voice").input_value() == "tone"
            # a long voice description stays inside the page at 1000 px: no sideways scrolling
            layout = page.evaluate("""() => ({
                page: document.documentElement.scrollWidth, view: document.documentElement.clientWidth,
                select: document.getElementById('voice').getBoundingClientRect().right,
                main: document.querySelector('main').getBoundingClientRect().right})""")
            assert layout["page"] <= layout["view"] and layout["select"] <= layout["main"] + 1, layout
            assert LONG_DESCRIPTION in page.locator("#voice-info").inner_text()
            page.fill("#text", TEXT)
            page.locator("#speed").fill("2")
            with page.expect_response(lambda r: r.url.endswith("/v1/audio/speech"), timeout=TIMEOUT_MS) as resp:
                page.click("#play")
            assert resp.value.status == 200 and resp.value.headers["content-type"] == "audio/pcm"
            page.wait_for_function("Number(document.getElementById('bytes').dataset.bytes) > 0", timeout=TIMEOUT_MS)
            page.wait_for_function("document.getElementById('download').hasAttribute('href')", timeout=TIMEOUT_MS)
            status = page.locator("#status").inner_text()
            assert status.startswith("Done"), status
            received = int(page.locator("#bytes").get_attribute("data-bytes"))
            expected_samples = int(len(TEXT) * SECONDS_PER_CHAR / 2.0 * 22050)
            assert received == 2 * expected_samples
            # the download link holds a playable wav of what streamed in
            b64 = page.evaluate("""async () => {
                const blob = await (await fetch(document.getElementById('download').href)).blob();
                const bytes = new Uint8Array(await blob.arrayBuffer());
                let s = ''; for (const b of bytes) s += String.fromCharCode(b);
                return btoa(s);
            }""")
            wav, sr = sf.read(io.BytesIO(base64.b64decode(b64)), dtype="int16")
            assert sr == 22050 and wav.size == expected_samples
            assert not errors, errors
            # a refused request shows the server's message on the page
            page.fill("#text", " ")
            page.evaluate("document.getElementById('text').required = false")
            page.click("#play")
            page.wait_for_function("document.getElementById('status').classList.contains('error')", timeout=TIMEOUT_MS)
            assert "empty" in page.locator("#status").inner_text()
        finally:
            browser.close()
