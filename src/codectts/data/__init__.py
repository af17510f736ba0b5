"""Manifests, the corpus builder, teacher alignments, code cache and length-bucketed batching."""
