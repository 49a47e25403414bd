"""`hitgen generate`: jobs over a model family and a detector, shares under torchrun, event files."""
