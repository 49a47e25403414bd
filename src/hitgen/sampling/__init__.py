"""Sampling: batched autoregressive generation with a KV cache (later: engines, ODE solvers)."""
