"""`hitgen import-acts`: the odd-tracker's own command (added to the CLI by the detector)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console


def import_acts(
    hits: Annotated[Path, typer.Argument(help="ACTS simulated hits (RootSimHitWriter ROOT file)")],
    particles: Annotated[Path, typer.Option(help="the ACTS particles of the same events (RootParticleWriter ROOT file)")],
    out: Annotated[Path, typer.Option("--out", "-o", help="output event file (.h5)")],
    hits_tree: Annotated[str, typer.Option(help="name of the hits TTree")] = "hits",
    particles_tree: Annotated[str, typer.Option(help="name of the particles TTree")] = "particles",
    overwrite: Annotated[bool, typer.Option(help="replace an existing output file")] = False,
) -> None:
    """Import ACTS simulated hits as odd-tracker events: one per primary particle, hits mapped onto hitgen's modules."""
    from hitgen.core.atomic import check_new_output
    from hitgen.detectors import check_events
    from hitgen.detectors.odd_tracker.acts import read_acts

    check_new_output(out, overwrite, "--out")
    events = read_acts(hits, particles, hits_tree=hits_tree, particles_tree=particles_tree)
    check_events(events, f"{hits} + {particles}")
    path = events.write(out, overwrite=overwrite)
    Console(soft_wrap=True).print(f"{events.n_events} events, {events.n_hits} hits -> {path}")
