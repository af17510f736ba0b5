"""Training: one loop (accelerate; CPU / CUDA / bf16), checkpoints, resume, logs, and a recipe per model."""
