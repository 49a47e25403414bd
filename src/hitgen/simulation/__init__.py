"""Geant4 simulation: data-dir set-up, one run manager per worker, one builder per detector.

The only package that imports geant4_pybind (lazily, inside worker processes)."""
