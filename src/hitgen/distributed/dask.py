"""The Dask executor: the units of a run as tasks on any Dask distributed cluster.

The cluster is the user's: `dask scheduler` and `dask worker` started by hand, a LocalCluster, or
dask-jobqueue's SLURMCluster / HTCondorCluster; hitgen only connects to its scheduler (an address
tcp://HOST:PORT or a scheduler file). Each task is one unit; it writes its block beside the output on
the shared file system and returns only its timing, so no events pass through the scheduler. A task
whose worker dies is run again on another (RETRIES). Workers need hitgen and, to simulate, the
Geant4 data (GEANT4_DATA_DIR); a worker that lacks either fails its task with a message saying so.
Geant4 allows one run manager per process and is not thread-safe: start workers with one thread each
(`dask worker ADDRESS --nworkers N --nthreads 1`); a worker with more threads runs its units one at a
time.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hitgen.core.errors import HitgenError

RETRIES = 2  # a unit whose worker died is given to another worker up to this many times
# how long to wait for the scheduler, and for a first worker (HITGEN_DASK_TIMEOUT overrides: seconds)
CONNECT_TIMEOUT_S = 20.0


@dataclass
class Ran:
    busy_s: float = 0.0  # summed compute time of the units
    startup_s: float = 0.0  # the largest start-up a worker paid (Geant4 physics tables, model load)
    workers: int = 0  # distinct worker processes that ran units
    results: list[dict[str, Any]] = field(default_factory=list)

    def first(self, key: str, default: Any) -> Any:
        return self.results[0].get(key, default) if self.results else default


def connect(scheduler: str | None):
    """A distributed.Client of the scheduler at an address or in a scheduler file; one clear error otherwise."""
    try:
        from distributed import Client
    except ImportError:
        raise HitgenError("--executor dask needs dask and distributed: pip install 'hitgen[dask]'") from None
    if not scheduler:
        raise HitgenError("--executor dask needs --scheduler ADDRESS (tcp://HOST:PORT) or SCHEDULER_FILE")
    timeout = float(os.environ.get("HITGEN_DASK_TIMEOUT", CONNECT_TIMEOUT_S))
    path = Path(scheduler)
    if path.is_file():
        kwargs: dict[str, Any] = {"scheduler_file": str(path)}
    elif "://" in scheduler or ":" in scheduler:
        kwargs = {"address": scheduler}
    else:
        raise HitgenError(f"--scheduler {scheduler}: neither a scheduler file nor an address like tcp://HOST:PORT")
    try:
        client = Client(**kwargs, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as e:
        raise HitgenError(f"--scheduler {scheduler}: no Dask scheduler answered within {timeout:g} s ({e})") from None
    try:
        client.wait_for_workers(1, timeout=timeout)
    except (OSError, TimeoutError) as e:
        client.close()
        raise HitgenError(f"--scheduler {scheduler}: the scheduler has no worker (waited {timeout:g} s: {e})") from None
    return client


def run_units(scheduler: str | None, fn: Callable[[dict[str, Any]], dict[str, Any]], payloads: list[dict[str, Any]], progress, already: int) -> Ran:
    """Run fn(payload) for every payload as one task each; progress(events done) as units finish."""
    ran = Ran()
    if not payloads:
        return ran
    client = connect(scheduler)
    workers: set = set()
    try:
        with client.as_current():  # as_completed finds the client of these futures this way
            _gather(client, fn, payloads, progress, ran, workers, already)
    finally:
        client.close()
    ran.workers = len(workers)
    return ran


def _gather(client, fn, payloads, progress, ran: Ran, workers: set, done: int) -> None:
    from distributed import as_completed

    futures = [client.submit(fn, p, key=f"hitgen-{p['run']}-{p['unit'].start}", retries=RETRIES, pure=False) for p in payloads]
    for future in as_completed(futures):
        try:
            r = future.result()
        except ModuleNotFoundError as e:
            raise HitgenError(f"a Dask worker cannot import {e.name}: install hitgen on every worker ({e})") from None
        except HitgenError as e:
            raise HitgenError(f"a Dask worker failed a unit: {e}") from None
        ran.results.append(r)
        ran.busy_s += r["busy_s"]
        ran.startup_s = max(ran.startup_s, r["startup_s"])
        workers.add(r["worker"])
        done += r["events"]
        if progress:
            progress(done)
