"""Binnings (linear, log, hybrid) and per-detector tokenizers; invertible up to the binning."""
