"""`hitgen bench`: Geant4 and a model measured on the same machine in one run (run.py), with the
analytic FLOPs of generation and the measured matmul peak (roofline.py)."""
