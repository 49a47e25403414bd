"""Runs cut into units of events, run by local processes or a Dask cluster, resumable (hitgen.distributed.units)."""
