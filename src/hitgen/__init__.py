"""hitgen: transformer surrogates of Geant4 detector simulation, measured against Geant4."""

__version__ = "0.1.0"
