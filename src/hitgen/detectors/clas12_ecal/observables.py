"""Per-event and per-hit observables of a layered strip calorimeter (fields layer, strip, adc)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hitgen.core.events import EventSet


@dataclass
class CaloObservables:
    layer_names: list[str]
    strips_per_layer: list[int]
    p: np.ndarray  # (N,) |p| GeV
    momentum: np.ndarray  # (N, 3)
    hits_layer: np.ndarray  # (N, L) hits per event and layer
    total_adc_layer: np.ndarray  # (N, L)
    centroid: np.ndarray  # (N, L) strip with the highest ADC; -1 without hits
    strip_mean: np.ndarray  # (N, L) mean fired strip; -1 without hits
    strip_std: np.ndarray  # (N, L) spread of fired strips; 0 without hits
    hit_layer: np.ndarray  # (H,) per hit
    hit_strip: np.ndarray  # (H,)
    hit_log10_adc: np.ndarray  # (H,)

    @property
    def n_events(self) -> int:
        return len(self.p)

    @property
    def n_layers(self) -> int:
        return len(self.layer_names)

    @property
    def total_hits(self) -> np.ndarray:
        return self.hits_layer.sum(axis=1)

    @property
    def total_adc(self) -> np.ndarray:
        return self.total_adc_layer.sum(axis=1)

    @property
    def occupancy(self) -> np.ndarray:
        return (self.hits_layer > 0).mean(axis=0)

    def strips_of_layer(self, layer: int) -> np.ndarray:
        return self.hit_strip[self.hit_layer == layer]

    def log10_adc_of_layer(self, layer: int) -> np.ndarray:
        return self.hit_log10_adc[self.hit_layer == layer]

    def select(self, idx: np.ndarray) -> CaloObservables:
        """Observables of a subset of events (used for the noise floor's halves)."""
        idx = np.asarray(idx)
        keep = np.zeros(self.n_events, dtype=bool)
        keep[idx] = True
        per_hit = np.repeat(keep, self.hits_layer.sum(axis=1))
        return CaloObservables(
            self.layer_names,
            self.strips_per_layer,
            self.p[idx],
            self.momentum[idx],
            self.hits_layer[idx],
            self.total_adc_layer[idx],
            self.centroid[idx],
            self.strip_mean[idx],
            self.strip_std[idx],
            self.hit_layer[per_hit],
            self.hit_strip[per_hit],
            self.hit_log10_adc[per_hit],
        )

    def _feature_blocks(self) -> list[tuple[str, np.ndarray]]:
        """The classifier's features in column order, each with the group it belongs to: conditions;
        total hits, log10(1 + total ADC) and the response total ADC / |p|; then per layer hits,
        log10(1 + total ADC), mean (the shower position) and spread (its width) of the fired strips."""
        return [
            ("conditions", self.momentum),
            ("conditions", self.p),
            ("hits", self.total_hits),
            ("energy", np.log10(1.0 + self.total_adc)),
            ("energy", self.total_adc / self.p),
            ("hits", self.hits_layer),
            ("energy", np.log10(1.0 + self.total_adc_layer)),
            ("position", self.strip_mean),
            ("spread", self.strip_std),
        ]

    def event_features(self) -> np.ndarray:
        """The fixed per-event feature vector of the classifier test (_feature_blocks), (N, columns)."""
        return np.column_stack([block for _, block in self._feature_blocks()]).astype(np.float64)

    def event_feature_groups(self) -> dict[str, list[int]]:
        """Columns of event_features by the group they belong to: conditions, hits, energy, position, spread."""
        groups: dict[str, list[int]] = {}
        start = 0
        for name, block in self._feature_blocks():
            width = 1 if block.ndim == 1 else block.shape[1]
            groups.setdefault(name, []).extend(range(start, start + width))
            start += width
        return groups


def calo_observables(events: EventSet) -> CaloObservables:
    """Observables of a file whose hits have layer, strip and adc fields, ordered by event."""
    spec = events.detector_spec
    names = list(spec["readout_layers"])
    n_layers, n = len(names), events.n_events
    event = events.event_index()
    layer = events.hits["layer"].astype(np.int64)
    strip = events.hits["strip"].astype(np.int64)
    adc = events.hits["adc"].astype(np.float64)
    group = event * n_layers + layer
    size = n * n_layers

    def per_group(weights: np.ndarray) -> np.ndarray:
        return np.bincount(group, weights, minlength=size).reshape(n, n_layers)

    hits_layer = np.bincount(group, minlength=size).reshape(n, n_layers)
    has = hits_layer > 0
    safe = np.maximum(hits_layer, 1)
    mean = per_group(strip.astype(np.float64)) / safe
    var = per_group(strip.astype(np.float64) ** 2) / safe - mean**2
    centroid = np.full(size, -1, dtype=np.int64)
    order = np.lexsort((adc, group))  # within each group, the largest ADC comes last
    last = np.r_[group[order][1:] != group[order][:-1], True] if len(order) else np.zeros(0, bool)
    centroid[group[order][last]] = strip[order][last]
    momentum = events.conditions["momentum"].astype(np.float64)
    return CaloObservables(
        layer_names=names,
        strips_per_layer=list(spec["strips_per_layer"]),
        p=np.linalg.norm(momentum, axis=1),
        momentum=momentum,
        hits_layer=hits_layer,
        total_adc_layer=per_group(adc),
        centroid=centroid.reshape(n, n_layers),
        strip_mean=np.where(has, mean, -1.0),
        strip_std=np.where(has, np.sqrt(np.maximum(var, 0.0)), 0.0),
        hit_layer=layer,
        hit_strip=strip,
        hit_log10_adc=np.log10(np.maximum(adc, 1.0)),
    )
