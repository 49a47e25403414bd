"""Importers: event files of other simulations turned into hitgen-events files."""
