"""`hitgen info`, the shared part: sizes and hits per event of one event file, and the per-layer
table and quick-look plots that a detector fills with its own layers."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hitgen.core.events import EventSet
from hitgen.detectors.base import Table


def per_layer_counts(events: EventSet, n_layers: int, layer: np.ndarray | None = None) -> np.ndarray:
    """Hits per (event, layer), shape (N, n_layers); the layer of each hit defaults to the 'layer' field."""
    layer = events.hits["layer"] if layer is None else layer
    counts = np.zeros((events.n_events, n_layers), dtype=np.int64)
    np.add.at(counts, (events.event_index(), layer.astype(np.int64)), 1)
    return counts


def per_layer_table(names: list[str], counts: np.ndarray, title: str = "per readout layer") -> Table:
    """Occupancy (fraction of events with >= 1 hit) and mean hits per event of each layer."""
    occupancy = (counts > 0).mean(axis=0) if len(counts) else np.zeros(len(names))
    hits = counts.mean(axis=0) if len(counts) else np.zeros(len(names))
    rows = [[name, f"{o:.3f}", f"{h:.2f}"] for name, o, h in zip(names, occupancy, hits, strict=True)]
    return (title, ["layer", "occupancy", "hits/event"], rows)


def save_info_plots(events: EventSet, names: list[str], counts: np.ndarray, folder: str | Path) -> list[Path]:
    """Write occupancy.png (per layer) and hits_per_event.png into folder; return their paths."""
    import matplotlib.pyplot as plt
    import mplhep as hep

    from hitgen.evaluation import plotting  # noqa: F401  (selects the Agg back end)

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    label = f"{events.detector}, {events.n_events} events"
    occupancy = (counts > 0).mean(axis=0) if len(counts) else np.zeros(len(names))
    paths = []
    with plt.style.context(hep.style.ROOT):
        fig, ax = plt.subplots(figsize=(8, 6))
        x = np.arange(len(names))
        ax.bar(x, occupancy, color="tab:blue", alpha=0.8)
        ax.set_xticks(x, names, rotation=45, ha="right")
        ax.set_ylabel("fraction of events with >= 1 hit")
        ax.set_ylim(0, 1.05)
        ax.set_title(label, fontsize=14)
        fig.tight_layout()
        paths.append(folder / "occupancy.png")
        fig.savefig(paths[-1], dpi=100)
        plt.close(fig)

        fig, ax = plt.subplots(figsize=(8, 6))
        hpe = events.hits_per_event()
        edges = np.arange(-0.5, max(int(hpe.max()) if len(hpe) else 0, 1) + 1.5)
        hist, _ = np.histogram(hpe, bins=edges)
        hep.histplot(hist, edges, ax=ax, yerr=np.sqrt(hist), histtype="step", label=events.producer[:60])
        ax.set_xlabel("hits per event")
        ax.set_ylabel("events")
        ax.set_title(label, fontsize=14)
        ax.legend(fontsize=10)
        fig.tight_layout()
        paths.append(folder / "hits_per_event.png")
        fig.savefig(paths[-1], dpi=100)
        plt.close(fig)
    return paths
