"""codectts: codec-language-model text-to-speech on small compute."""
__version__ = "0.1.0"
