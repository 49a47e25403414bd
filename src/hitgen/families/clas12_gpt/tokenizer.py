"""Tokens of `clas12-ecal` events, as in the CLAS12 GPT paper: three aligned streams (strip, ADC,
TDC), one position per hit.

An event is SOS, then the hits of readout layer 0 by ascending strip, LAYER_SEP, the hits of layer
1, ..., the hits of layer 8 (no separator after it), EOS: at most 1 + 9*20 + 8 + 1 = 190 positions.
- strip: the global strip index (layer offset + strip), 408 values, then PAD, SOS, EOS, LAYER_SEP;
- ADC: 50 linear bins over [1, 50] and 4950 log bins over (50, 94920], then the four specials;
- TDC: 2000 log bins over [1, 2e6], TDC_ZERO (a hit without a valid time), then the four specials.
At special positions all three streams carry that special. Each position also has a layer index
(0-8; 9 for specials) and the hit's rank within its layer (0-19; 20 for specials).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hitgen.core.binning import HybridBinning, LinearBinning, LogBinning
from hitgen.core.csr import offsets_from_counts
from hitgen.detectors.clas12_ecal import geometry as det

N_LAYERS = det.N_READOUT_LAYERS
MAX_HITS = det.MAX_HITS_PER_LAYER
MAX_LENGTH = 1 + N_LAYERS * MAX_HITS + (N_LAYERS - 1) + 1  # 190
STRIP_OFFSETS = offsets_from_counts(det.STRIPS_PER_LAYER)  # (10,)
N_STRIPS = int(STRIP_OFFSETS[-1])  # 408

ADC_BINNING = HybridBinning(LinearBinning(1.0, 50.0, 50), LogBinning(50.0, 94920.0, 4950))
TDC_BINNING = LogBinning(1.0, 2e6, 2000)
N_ADC = ADC_BINNING.n_bins  # 5000
N_TDC = TDC_BINNING.n_bins  # 2000
TDC_ZERO = N_TDC  # 2000
TDC_THRESHOLD = det.TDC_THRESHOLD_COUNTS  # the discriminator: a hit has a time exactly when its ADC reaches it

SPECIALS = ("PAD", "SOS", "EOS", "LAYER_SEP")


@dataclass(frozen=True)
class Stream:
    """One token stream: `n_values` value tokens, then (optionally) extra tokens, then the specials."""

    n_values: int
    n_extra: int = 0

    @property
    def pad(self) -> int:
        return self.n_values + self.n_extra

    @property
    def sos(self) -> int:
        return self.pad + 1

    @property
    def eos(self) -> int:
        return self.pad + 2

    @property
    def sep(self) -> int:
        return self.pad + 3

    @property
    def vocab_size(self) -> int:
        return self.pad + len(SPECIALS)


STRIP = Stream(N_STRIPS)  # 412 tokens
ADC = Stream(N_ADC)  # 5004 tokens
TDC = Stream(N_TDC, n_extra=1)  # 2005 tokens (TDC_ZERO = 2000)
SPECIAL_LAYER = N_LAYERS  # layer index of special positions
SPECIAL_RANK = MAX_HITS  # rank index of special positions


@dataclass
class TokenBatch:
    """Padded token arrays (N, T) of several events, with per-position layer and rank, and lengths."""

    strip: np.ndarray
    adc: np.ndarray
    tdc: np.ndarray
    layer: np.ndarray
    rank: np.ndarray
    length: np.ndarray  # (N,) positions used, SOS and EOS included

    def __len__(self) -> int:
        return len(self.length)


def hit_positions(layer: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For hits sorted by (event, layer, strip): event index, position in the sequence, rank in layer.

    position = 1 (SOS) + hits of earlier layers + one LAYER_SEP per earlier layer + rank.
    """
    n = len(offsets) - 1
    event = np.repeat(np.arange(n), np.diff(offsets))
    layer = layer.astype(np.int64)
    index_in_event = np.arange(len(layer)) - offsets[:-1][event]
    group = event * N_LAYERS + layer
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]]) if len(group) else np.zeros(0, np.int64)
    rank = np.arange(len(group)) - np.repeat(starts, np.diff(np.r_[starts, len(group)]))
    return event, 1 + index_in_event + layer, rank


def encode(offsets: np.ndarray, hits: dict[str, np.ndarray], max_length: int = MAX_LENGTH) -> TokenBatch:
    """Tokenise events (CSR offsets + hit fields sorted by layer then strip within each event)."""
    n = len(offsets) - 1
    layer = hits["layer"].astype(np.int64)
    strip = hits["strip"].astype(np.int64)
    if len(layer) and (np.any(layer < 0) or np.any(layer >= N_LAYERS)):
        raise ValueError("layer index out of range")
    event, pos, rank = hit_positions(layer, offsets)
    if len(rank) and rank.max() >= MAX_HITS:
        raise ValueError(f"more than {MAX_HITS} hits in a readout layer")
    length = np.diff(offsets) + N_LAYERS + 1  # SOS + hits + 8 separators + EOS
    if n and length.max() > max_length:
        raise ValueError(f"an event needs {length.max()} positions, more than {max_length}")

    shape = (n, max_length)
    out = {
        "strip": np.full(shape, STRIP.pad, np.int16),
        "adc": np.full(shape, ADC.pad, np.int16),
        "tdc": np.full(shape, TDC.pad, np.int16),
        "layer": np.full(shape, SPECIAL_LAYER, np.int8),
        "rank": np.full(shape, SPECIAL_RANK, np.int8),
    }
    rows = np.arange(n)
    for name, stream in (("strip", STRIP), ("adc", ADC), ("tdc", TDC)):
        out[name][:, 0] = stream.sos
        out[name][rows, length - 1] = stream.eos
    # separators: after the hits of layer l (l = 0..7), at 1 + hits in layers <= l + l
    per_layer = np.zeros((n, N_LAYERS), np.int64)
    np.add.at(per_layer, (event, layer), 1)
    sep_pos = 1 + np.cumsum(per_layer, axis=1)[:, :-1] + np.arange(N_LAYERS - 1)
    for name, stream in (("strip", STRIP), ("adc", ADC), ("tdc", TDC)):
        out[name][rows[:, None], sep_pos] = stream.sep
    tdc = hits["tdc"].astype(np.int64)
    out["strip"][event, pos] = STRIP_OFFSETS[layer] + strip
    out["adc"][event, pos] = ADC_BINNING.encode(hits["adc"])
    out["tdc"][event, pos] = np.where(tdc > 0, TDC_BINNING.encode(tdc), TDC_ZERO)
    out["layer"][event, pos] = layer
    out["rank"][event, pos] = rank
    return TokenBatch(**out, length=length)


def decode(strip: np.ndarray, adc: np.ndarray, tdc: np.ndarray, tdc_place: np.ndarray | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Token arrays (N, T) -> (offsets, hits). Hit positions are those with a strip value token
    before the first EOS; their ADC and TDC tokens must be value tokens (TDC_ZERO allowed). A time
    is the geometric centre of its bin or, given tdc_place (N, T) in [0, 1), that place within it."""
    strip, adc, tdc = (np.asarray(a, dtype=np.int64) for a in (strip, adc, tdc))
    n, t = strip.shape
    ended = np.cumsum(strip == STRIP.eos, axis=1) > 0
    is_hit = (strip < N_STRIPS) & ~ended
    is_hit[:, 0] = False
    if np.any(adc[is_hit] >= N_ADC) or np.any(tdc[is_hit] > TDC_ZERO):
        raise ValueError("a hit position carries a special ADC or TDC token")
    rows, _ = np.nonzero(is_hit)
    s = strip[is_hit]
    layer = np.searchsorted(STRIP_OFFSETS, s, side="right") - 1
    tdc_tok = tdc[is_hit]
    tdc_bin = np.minimum(tdc_tok, N_TDC - 1)
    time = TDC_BINNING.decode(tdc_bin) if tdc_place is None else TDC_BINNING.at(tdc_bin, np.asarray(tdc_place)[is_hit])
    tdc_val = np.where(tdc_tok == TDC_ZERO, 0, np.rint(time))
    counts = np.bincount(rows, minlength=n)
    offsets = offsets_from_counts(counts)
    hits = {
        "layer": layer.astype(np.int8),
        "strip": (s - STRIP_OFFSETS[layer]).astype(np.int16),
        "adc": np.rint(ADC_BINNING.decode(adc[is_hit])).astype(np.int32),
        "tdc": tdc_val.astype(np.int32),
    }
    return offsets, hits


# Energy-first sequences (not in the paper): before SOS, the nine per-layer energies, each the layer's
# ADC sum as a fraction of |p| x adc_per_gev (ADC_PER_GEV), in 1000 log
# bins over [3e-5, 1] (1.04% wide: a tenth of the spread of a layer's energy at 10 GeV; measured on
# the selection sample, the fractions of non-empty layers lie in [6e-5, 0.54]), and ENERGY_ZERO for
# an empty layer.
ADC_PER_GEV = 19400.0  # the Geant4 mean response of clas12-ecal: only the scale of the fractions
ENERGY_BINNING = LogBinning(3e-5, 1.0, 1000)
N_ENERGY = ENERGY_BINNING.n_bins  # 1000
ENERGY_ZERO = N_ENERGY  # 1000: a layer without hits
ENERGY_VOCAB = N_ENERGY + 1


# The event's total energy token of total-first sequences (GPTConfig.energy_total_first): the sum of the
# nine layers' ADC as a fraction of |p| x ADC_PER_GEV, in as many log bins as the layer energies (the
# energy head's vocabulary) over [0.25, 2] (0.21% wide: a fifteenth of the total's spread at 10 GeV;
# measured on the selection sample, the totals lie in [0.57, 1.24]), ENERGY_ZERO for an empty event.
TOTAL_BINNING = LogBinning(0.25, 2.0, N_ENERGY)


def axis_coordinates(momentum: np.ndarray) -> np.ndarray:
    """Where the photon's line of flight crosses each readout layer (at its mean depth), in that
    layer's strip widths from the edge of its first strip, (N, 9) float32: a hit of strip k (within
    its layer) lies k + 0.5 - axis strips from the shower's axis."""
    local = det.lab_to_local(det.shower_axis_points(np.asarray(momentum, dtype=np.float64)))[..., :2]  # (N, 9, 2)
    out = np.empty((len(local), N_LAYERS))
    for r in det.READOUT_LAYERS:
        out[:, r.index] = det.strip_coordinate(local[:, r.index], r) / r.strip_width_cm
    return out.astype(np.float32)


def layer_sums(offsets: np.ndarray, layer: np.ndarray, adc: np.ndarray) -> np.ndarray:
    """ADC summed per event and readout layer, (N, 9) float64."""
    n = len(offsets) - 1
    event = np.repeat(np.arange(n), np.diff(offsets))
    out = np.zeros((n, N_LAYERS))
    np.add.at(out, (event, np.asarray(layer, dtype=np.int64)), np.asarray(adc, dtype=np.float64))
    return out


def encode_energies(sums: np.ndarray, momentum: np.ndarray) -> np.ndarray:
    """Per-layer ADC sums (N, 9) of events with these momenta (N, 3) -> energy tokens (N, 9) int16."""
    scale = np.linalg.norm(np.asarray(momentum, dtype=np.float64), axis=1)[:, None] * ADC_PER_GEV
    return np.where(sums > 0, ENERGY_BINNING.encode(sums / scale), ENERGY_ZERO).astype(np.int16)


def encode_total(sums: np.ndarray, momentum: np.ndarray) -> np.ndarray:
    """Per-layer ADC sums (N, 9) -> the total energy tokens (N,) int16 (TOTAL_BINNING)."""
    total = np.asarray(sums, dtype=np.float64).sum(axis=1)
    scale = np.linalg.norm(np.asarray(momentum, dtype=np.float64), axis=1) * ADC_PER_GEV
    return np.where(total > 0, TOTAL_BINNING.encode(total / scale), ENERGY_ZERO).astype(np.int16)


def total_fractions(tokens: np.ndarray) -> np.ndarray:
    """Total energy tokens -> fractions of |p| x ADC_PER_GEV at their bins' centres (0 for ENERGY_ZERO)."""
    t = np.asarray(tokens, dtype=np.int64)
    return np.where(t == ENERGY_ZERO, 0.0, TOTAL_BINNING.decode(np.minimum(t, N_ENERGY - 1)))


def energy_fractions(tokens: np.ndarray) -> np.ndarray:
    """Energy tokens -> the fractions of |p| x ADC_PER_GEV at their bins' centres (0 for ENERGY_ZERO)."""
    t = np.asarray(tokens, dtype=np.int64)
    return np.where(t == ENERGY_ZERO, 0.0, ENERGY_BINNING.decode(np.minimum(t, N_ENERGY - 1)))


def rescale_to_layer_sums(offsets: np.ndarray, hits: dict[str, np.ndarray], target: np.ndarray) -> dict[str, np.ndarray]:
    """Scale each event's ADCs layer by layer so that every layer holds the ADC sum `target` (N, 9)
    (rounded to integers, at least 1, at most the ADC range): the model's own drawn layer energies
    (GPTConfig.rescale_to_layer_energy). Layers without hits stay empty."""
    n = len(offsets) - 1
    layer = hits["layer"].astype(np.int64)
    event = np.repeat(np.arange(n), np.diff(offsets))
    have = layer_sums(offsets, layer, hits["adc"])
    factor = np.where(have > 0, np.asarray(target, dtype=np.float64) / np.maximum(have, 1e-300), 1.0)
    adc = np.rint(hits["adc"] * factor[event, layer])
    return hits | {"adc": np.clip(adc, 1, ADC_BINNING.log.hi).astype(np.int32)}


def decode_tokens(tokens: dict[str, np.ndarray], tdc_threshold_rule: bool = False) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Generated token arrays -> (offsets, hits): decode (times placed within their bins where the
    generator drew their places, key "tdc_place"; the drawn times, key "tdc_time", where the
    generator kept them apart from the trunk's TDC tokens), then, where it drew layer energies to hold (key
    "layer_adc", (N, 9) ADC), rescale each layer's hits to them; with tdc_threshold_rule the
    digitisation's discriminator then keeps the time only of hits whose ADC reaches its threshold."""
    offsets, hits = decode(tokens["strip"], tokens["adc"], tokens.get("tdc_time", tokens["tdc"]), tokens.get("tdc_place"))
    if "layer_adc" in tokens:
        hits = rescale_to_layer_sums(offsets, hits, tokens["layer_adc"])
    if tdc_threshold_rule:
        hits["tdc"] = np.where(hits["adc"] >= TDC_THRESHOLD, hits["tdc"], 0).astype(np.int32)
    return offsets, hits
