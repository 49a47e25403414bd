"""Summary metrics of candidate vs reference (the CLAS12 paper's Table 2 and more), the classifier
test and the noise floor."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hitgen.detectors.clas12_ecal.observables import CaloObservables
from hitgen.evaluation.classifier import CLASSIFIER_SEED, CLASSIFIER_SETTINGS  # noqa: F401  (recorded in metrics.json)
from hitgen.evaluation.classifier import classifier_auc as shared_auc
from hitgen.evaluation.stats import NOISE_FLOOR_SEED, halves, w1

# The CLAS12 GPT paper's own values (Table 2), shown beside ours as a reference column.
PAPER_TABLE2 = {"shower_position_w1_strips": 0.12, "hits_per_event_w1": 0.27, "per_hit_log10_adc_w1": 0.017, "energy_scale": "within 1-2%"}
N_MOMENTUM_BINS = 10
MIN_EVENTS_PER_BIN = 20  # |p| bins with fewer events in either sample are left out of the energy scale
# Fixed settings, so that AUCs compare across models and sample sizes.


def momentum_edges(p: np.ndarray, n_bins: int = N_MOMENTUM_BINS) -> np.ndarray:
    """Equal-width |p| bins over the reference's range (rounded out to 0.1 GeV)."""
    return np.linspace(np.floor(p.min() * 10) / 10, np.ceil(p.max() * 10) / 10, n_bins + 1)


@dataclass
class Response:
    """Per |p| bin: events, mean and std of total ADC, mean and relative spread (std / mean) of the
    response total ADC / |p|."""

    n: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    response: np.ndarray
    spread: np.ndarray


def energy_response(obs: CaloObservables, edges: np.ndarray) -> Response:
    which = np.clip(np.digitize(obs.p, edges) - 1, 0, len(edges) - 2)
    n = np.bincount(which, minlength=len(edges) - 1)
    adc = obs.total_adc
    mean, std, response, spread = (np.full(len(n), np.nan) for _ in range(4))
    for b in np.flatnonzero(n):
        m = which == b
        mean[b], std[b] = adc[m].mean(), adc[m].std()
        r = adc[m] / obs.p[m]
        response[b] = r.mean()
        spread[b] = r.std() / r.mean() if r.mean() > 0 else np.nan
    return Response(n, mean, std, response, spread)


def table2(ref: CaloObservables, cand: CaloObservables) -> dict[str, float]:
    """The CLAS12 paper's Table 2 metrics plus the energy scale.

    The energy scale compares the mean response (total ADC / |p|) per |p| bin. For a candidate made
    for the reference's own conditions this equals the ratio of mean total ADC; unlike it, it does
    not carry the spread of |p| inside a bin (bins are about 1 GeV wide), which would otherwise
    dominate the noise floor, whose two halves have different conditions."""
    layers = range(ref.n_layers)
    edges = momentum_edges(ref.p)
    r, c = energy_response(ref, edges), energy_response(cand, edges)
    ok = (r.n >= MIN_EVENTS_PER_BIN) & (c.n >= MIN_EVENTS_PER_BIN)
    ratios = c.response[ok] / r.response[ok]
    resolution = c.spread[ok] / r.spread[ok]
    return {
        "shower_position_w1_strips": float(np.nanmean([w1(ref.strips_of_layer(i), cand.strips_of_layer(i)) for i in layers])),
        "hits_per_event_w1": w1(ref.total_hits, cand.total_hits),
        "per_hit_log10_adc_w1": float(np.nanmean([w1(ref.log10_adc_of_layer(i), cand.log10_adc_of_layer(i)) for i in layers])),
        "energy_scale_ratio": float(ratios.mean()) if len(ratios) else float("nan"),
        "energy_scale_max_dev": float(np.abs(ratios - 1).max()) if len(ratios) else float("nan"),
        # the relative resolution (std / mean of total ADC / |p|) per |p| bin, candidate over reference
        "energy_resolution_ratio": float(resolution.mean()) if len(resolution) else float("nan"),
        "energy_resolution_max_dev": float(np.abs(resolution - 1).max()) if len(resolution) else float("nan"),
    }


def occupancy_max_abs_diff(ref: CaloObservables, cand: CaloObservables) -> float:
    return float(np.abs(ref.occupancy - cand.occupancy).max())


def paired(ref: CaloObservables, cand: CaloObservables) -> bool:
    """Whether the candidate has the reference's conditions, event by event (then the split pairs them)."""
    return ref.n_events == cand.n_events and np.array_equal(ref.momentum, cand.momentum)


def classifier_auc(ref: CaloObservables, cand: CaloObservables, seed: int = CLASSIFIER_SEED, columns: list[int] | None = None) -> float:
    """ROC AUC of the classifier (hitgen.evaluation.classifier) from all event features or only
    these columns of them; the split is paired when the conditions are."""
    cols = slice(None) if columns is None else columns
    conditions = ref.momentum if paired(ref, cand) else None
    return shared_auc(ref.event_features()[:, cols], cand.event_features()[:, cols], conditions, seed)


def low_level_features(events) -> np.ndarray:
    """The event itself for the low-level classifier (as CaloChallenge's beside its high-level one):
    per readout layer and strip, log10(1 + ADC) and the TDC in ns (0 where the strip did not fire),
    and the momentum. (N, 3 + 2 x 408)."""
    strips = np.asarray(events.detector_spec["strips_per_layer"])
    first = np.concatenate([[0], np.cumsum(strips)[:-1]])
    n, width = events.n_events, int(strips.sum())
    cell = first[events.hits["layer"].astype(np.int64)] + events.hits["strip"].astype(np.int64)
    event = events.event_index()
    adc, tdc = np.zeros((n, width), np.float32), np.zeros((n, width), np.float32)
    adc[event, cell] = np.log10(1 + events.hits["adc"].astype(np.float32))
    tdc[event, cell] = events.hits["tdc"].astype(np.float32) * 0.025  # 25 ps per count
    return np.hstack([events.conditions["momentum"].astype(np.float32), adc, tdc])


def low_level_auc(ref_events, cand_events, ref: CaloObservables, cand: CaloObservables, seed: int = CLASSIFIER_SEED) -> float:
    """The classifier's AUC from the event itself (low_level_features), paired where the conditions
    are (decided by `paired` on the same events' observables)."""
    conditions = ref.momentum if paired(ref, cand) else None
    return shared_auc(low_level_features(ref_events), low_level_features(cand_events), conditions, seed)


def classifier_auc_by_group(ref: CaloObservables, cand: CaloObservables) -> dict[str, float]:
    """The classifier's AUC from the conditions and one group of event features at a time (hits,
    energy, position, spread; CaloObservables.event_feature_groups), all at the same momenta: which
    aspect of the events gives the candidate away."""
    groups = ref.event_feature_groups()
    conditions = groups.pop("conditions")
    return {name: classifier_auc(ref, cand, columns=conditions + cols) for name, cols in groups.items()}


def compare(ref: CaloObservables, cand: CaloObservables) -> dict[str, float]:
    """table2 metrics, occupancy difference and classifier AUC (all features, and by group) of one pair of samples."""
    return {
        **table2(ref, cand),
        "occupancy_max_abs_diff": occupancy_max_abs_diff(ref, cand),
        "classifier_auc": classifier_auc(ref, cand),
        "classifier_auc_by_group": classifier_auc_by_group(ref, cand),
    }


def noise_floor(ref: CaloObservables, seed: int = NOISE_FLOOR_SEED) -> dict[str, float]:
    """The same metrics between two disjoint random halves of the reference."""
    a, b = halves(ref.n_events, seed)
    return compare(ref.select(a), ref.select(b))
