"""Quick-look plots of one event file (per-layer occupancy, hits per event), in the HEP style."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import mplhep as hep  # noqa: E402
import numpy as np  # noqa: E402

from hitgen.events import EventSet  # noqa: E402
from hitgen.summary import Summary  # noqa: E402


def save_info_plots(events: EventSet, summary: Summary, folder: str | Path) -> list[Path]:
    """Write occupancy.png and hits_per_event.png into folder; return their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    label = f"{summary.detector}, {summary.n_events} events"
    paths = []
    with plt.style.context(hep.style.ROOT):
        fig, ax = plt.subplots(figsize=(8, 6))
        x = np.arange(len(summary.layer_names))
        ax.bar(x, summary.occupancy, color="tab:blue", alpha=0.8)
        ax.set_xticks(x, summary.layer_names, rotation=45, ha="right")
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
        counts, _ = np.histogram(hpe, bins=edges)
        hep.histplot(counts, edges, ax=ax, yerr=np.sqrt(counts), histtype="step", label=summary.producer[:60])
        ax.set_xlabel("hits per event")
        ax.set_ylabel("events")
        ax.set_title(label, fontsize=14)
        ax.legend(fontsize=10)
        fig.tight_layout()
        paths.append(folder / "hits_per_event.png")
        fig.savefig(paths[-1], dpi=100)
        plt.close(fig)
    return paths
