"""Shared transformer blocks and the acoustic models built on them (Talker, duration model, TRM, CSM)."""
