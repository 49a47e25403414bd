"""odd-tracker in `hitgen info`: occupancy and hits per event of each layer, from the geometry ids."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hitgen.core.events import EventSet
from hitgen.detectors.base import Table
from hitgen.detectors.odd_tracker import geometry as odd
from hitgen.evaluation.info import per_layer_counts, per_layer_table, save_info_plots


def _layers(events: EventSet) -> tuple[list[str], np.ndarray]:
    m = odd.cached_modules()
    names = [f"{sub.name} {r:g} mm" for sub in odd.SUBSYSTEMS for r in sub.radii_mm]
    layer = m.layer[odd.module_index(m, events.hits["geometry_id"])]
    return names, per_layer_counts(events, len(names), layer)


def info_tables(events: EventSet) -> list[Table]:
    return [per_layer_table(*_layers(events))]


def info_plots(events: EventSet, folder: Path) -> list[Path]:
    return save_info_plots(events, *_layers(events), folder)
