"""Errors a user can cause. The CLI turns each into one line and a non-zero exit."""

from __future__ import annotations


class HitgenError(Exception):
    """Base class of every error caused by input (paths, options, files), not by a bug."""


class EventFileError(HitgenError):
    """A file is missing, foreign, truncated or inconsistent with the hitgen-events format."""


class Geant4DataError(HitgenError):
    """Geant4 data sets cannot be found; nothing was simulated."""


class UnknownDetectorError(HitgenError):
    """The detector name is not one hitgen knows."""
