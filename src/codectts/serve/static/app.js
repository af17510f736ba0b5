// codectts web page: streams 16-bit PCM from /v1/audio/speech and plays it with the Web Audio API
// as it arrives; the received audio becomes a wav download when the stream ends. No build step.
"use strict";

const $ = (id) => document.getElementById(id);
const PCM_BYTES = 2;          // 16-bit little-endian mono
const START_DELAY_S = 0.05;   // small cushion before the first chunk plays
let controller = null;
let downloadUrl = null;

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

function showVoiceInfo() {
  const opt = $("voice").selectedOptions[0];
  $("voice-info").textContent = opt ? opt.dataset.description : "";
}

async function loadVoices() {
  try {
    const [voices, health] = await Promise.all([
      fetch("/v1/voices").then((r) => r.json()),
      fetch("/health").then((r) => r.json()),
    ]);
    const select = $("voice");
    for (const v of voices.voices) {
      const opt = document.createElement("option");
      opt.value = v.name;
      opt.textContent = v.name;       // the name only: a long description would widen the page
      opt.title = v.description || "";
      opt.dataset.description = v.description || "";
      opt.selected = v.name === voices.default;
      select.appendChild(opt);
    }
    showVoiceInfo();
    $("text").maxLength = health.max_input_chars;
    setStatus("Ready.");
  } catch (err) {
    setStatus(`Cannot reach the server: ${err}`, true);
  }
}

function wavBlob(pcmParts, sampleRate) {
  const dataBytes = pcmParts.reduce((n, p) => n + p.byteLength, 0);
  const header = new DataView(new ArrayBuffer(44));
  const text = (off, s) => [...s].forEach((c, i) => header.setUint8(off + i, c.charCodeAt(0)));
  text(0, "RIFF"); header.setUint32(4, 36 + dataBytes, true); text(8, "WAVE");
  text(12, "fmt "); header.setUint32(16, 16, true); header.setUint16(20, 1, true); header.setUint16(22, 1, true);
  header.setUint32(24, sampleRate, true); header.setUint32(28, sampleRate * PCM_BYTES, true);
  header.setUint16(32, PCM_BYTES, true); header.setUint16(34, 16, true);
  text(36, "data"); header.setUint32(40, dataBytes, true);
  return new Blob([header, ...pcmParts], { type: "audio/wav" });
}

function resetDownload() {
  const link = $("download");
  if (downloadUrl) URL.revokeObjectURL(downloadUrl);
  downloadUrl = null;
  link.removeAttribute("href");
  link.classList.add("disabled");
  link.setAttribute("aria-disabled", "true");
}

async function speak(event) {
  event.preventDefault();
  if (controller) controller.abort();
  controller = new AbortController();
  resetDownload();
  $("play").disabled = true;
  $("stop").disabled = false;
  $("bytes").textContent = "0";
  $("bytes").dataset.bytes = "0";
  $("ttfa").textContent = "–";
  setStatus("Generating…");

  let ctx = null;
  try {
    ctx = new AudioContext();   // created on the click, so autoplay rules allow it
  } catch (err) {
    ctx = null;                 // no audio output: still fetch, count and offer the download
  }
  const t0 = performance.now();
  const parts = [];
  let received = 0;
  let carry = null;             // an odd trailing byte waits for its partner
  let playAt = 0;
  try {
    const res = await fetch("/v1/audio/speech", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({
        model: "codectts", input: $("text").value, voice: $("voice").value,
        speed: Number($("speed").value), response_format: "pcm", stream: true,
      }),
      signal: controller.signal,
    });
    if (!res.ok) {
      let message = `HTTP ${res.status}`;
      try { message = (await res.json()).error.message; } catch (_) { /* not JSON */ }
      throw new Error(message);
    }
    const sampleRate = Number(res.headers.get("X-Sample-Rate"));
    const reader = res.body.getReader();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      if (received === 0) $("ttfa").textContent = `${Math.round(performance.now() - t0)} ms`;
      received += value.byteLength;
      $("bytes").textContent = String(received);
      $("bytes").dataset.bytes = String(received);
      let bytes = value;
      if (carry !== null) {
        bytes = new Uint8Array(value.byteLength + 1);
        bytes[0] = carry; bytes.set(value, 1);
        carry = null;
      }
      if (bytes.byteLength % PCM_BYTES) { carry = bytes[bytes.byteLength - 1]; bytes = bytes.subarray(0, bytes.byteLength - 1); }
      if (!bytes.byteLength) continue;
      const pcm = bytes.slice();  // own copy, aligned for Int16Array
      parts.push(pcm.buffer);
      setStatus("Playing…");
      if (ctx) {
        const ints = new Int16Array(pcm.buffer);
        const buffer = ctx.createBuffer(1, ints.length, sampleRate);
        const floats = buffer.getChannelData(0);
        for (let i = 0; i < ints.length; i++) floats[i] = ints[i] / 32768;
        const src = ctx.createBufferSource();
        src.buffer = buffer;
        src.connect(ctx.destination);
        playAt = Math.max(playAt, ctx.currentTime + START_DELAY_S);
        src.start(playAt);
        playAt += buffer.duration;
      }
    }
    downloadUrl = URL.createObjectURL(wavBlob(parts, sampleRate));
    const link = $("download");
    link.href = downloadUrl;
    link.download = "speech.wav";
    link.classList.remove("disabled");
    link.setAttribute("aria-disabled", "false");
    const seconds = parts.reduce((n, p) => n + p.byteLength, 0) / PCM_BYTES / sampleRate;
    setStatus(`Done: ${seconds.toFixed(2)} s of audio${ctx ? "" : " (no audio output here: download it)"}.`);
  } catch (err) {
    if (err.name === "AbortError") setStatus("Stopped.");
    else setStatus(`Error: ${err.message}`, true);
    if (ctx) ctx.close();
  } finally {
    $("play").disabled = false;
    $("stop").disabled = true;
    controller = null;
  }
}

$("speed").addEventListener("input", () => { $("speed-value").textContent = Number($("speed").value).toFixed(2); });
$("form").addEventListener("submit", speak);
$("voice").addEventListener("change", showVoiceInfo);
$("stop").addEventListener("click", () => { if (controller) controller.abort(); });
loadVoices();
