"""Surrogate models: the multi-stream GPT (later MoE, flow matching)."""
