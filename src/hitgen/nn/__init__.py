"""Shared torch parts: transformer blocks and the KV cache, output heads, the inverse-CDF draw,
counter-based per-event random streams. They import nothing of hitgen above them."""
