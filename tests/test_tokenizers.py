"""Tokenizers: bins by hand, and property-based round trips of random valid events."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hitgen.core.binning import LinearBinning, LogBinning
from hitgen.families.clas12_gpt import tokenizer as tok


def test_vocabulary_sizes_match_the_paper():
    assert tok.STRIP.vocab_size == 412 and tok.ADC.vocab_size == 5004 and tok.TDC.vocab_size == 2005
    assert tok.MAX_LENGTH == 190 and tok.N_STRIPS == 408
    assert tok.STRIP_OFFSETS.tolist() == [0, 68, 130, 192, 228, 264, 300, 336, 372, 408]


def test_bins_by_hand():
    lin = LinearBinning(1.0, 50.0, 50)
    np.testing.assert_array_equal(lin.encode([1, 2, 49, 50, 0, 99]), [0, 1, 48, 49, 0, 49])
    assert lin.decode(0) == pytest.approx(1.49)  # arithmetic midpoint of [1, 1.98)
    log = LogBinning(1.0, 100.0, 2)  # edges 1, 10, 100
    np.testing.assert_array_equal(log.encode([1, 9.99, 10, 99, 100, 1e6]), [0, 0, 1, 1, 1, 1])
    np.testing.assert_allclose(log.decode([0, 1]), [np.sqrt(10), np.sqrt(1000)])  # geometric means
    # the hybrid ADC binning: integers 1..50 are exact, then 0.15% log bins
    adc = np.arange(1, 51)
    np.testing.assert_array_equal(np.rint(tok.ADC_BINNING.decode(tok.ADC_BINNING.encode(adc))), adc)
    # 51 falls in log bin floor(ln(51/50) / ln(94920/50) * 4950) = floor(12.98): near 50 the bins are finer than 1 count
    assert tok.ADC_BINNING.encode(51) == 50 + 12 and tok.ADC_BINNING.encode(94920) == 4999


def test_a_small_event_by_hand():
    # layer 0: strips 3, 7; layer 2: strip 1; layer 8: strip 35
    offsets = np.array([0, 4])
    hits = {
        "layer": np.array([0, 0, 2, 8], np.int8),
        "strip": np.array([3, 7, 1, 35], np.int16),
        "adc": np.array([12, 5000, 40, 94920], np.int32),
        "tdc": np.array([0, 1500, 0, 1900], np.int32),
    }
    b = tok.encode(offsets, hits)
    s = tok.STRIP
    expected = [s.sos, 3, 7, s.sep, s.sep, 130 + 1, s.sep, s.sep, s.sep, s.sep, s.sep, s.sep, 372 + 35, s.eos]
    assert b.length[0] == 14 == 1 + 4 + 8 + 1
    np.testing.assert_array_equal(b.strip[0, :14], expected)
    assert (b.strip[0, 14:] == s.pad).all()
    np.testing.assert_array_equal(b.layer[0, :14], [9, 0, 0, 9, 9, 2, 9, 9, 9, 9, 9, 9, 8, 9])
    np.testing.assert_array_equal(b.rank[0, :14], [20, 0, 1, 20, 20, 0, 20, 20, 20, 20, 20, 20, 0, 20])
    assert b.tdc[0, 1] == tok.TDC_ZERO and b.adc[0, 1] == 11 and b.adc[0, 3] == tok.ADC.sep


@st.composite
def events(draw):
    n = draw(st.integers(1, 6))
    layers, strips, counts = [], [], []
    for _ in range(n):
        c = 0
        for layer, n_strips in enumerate(tok.det.STRIPS_PER_LAYER):
            chosen = draw(st.lists(st.integers(0, n_strips - 1), max_size=20, unique=True))
            layers += [layer] * len(chosen)
            strips += sorted(chosen)
            c += len(chosen)
        counts.append(c)
    h = len(layers)
    adc = draw(st.lists(st.integers(1, 94920), min_size=h, max_size=h))
    tdc = draw(st.lists(st.one_of(st.just(0), st.integers(1, 1_999_999)), min_size=h, max_size=h))
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return offsets, {
        "layer": np.array(layers, np.int8),
        "strip": np.array(strips, np.int16),
        "adc": np.array(adc, np.int32),
        "tdc": np.array(tdc, np.int32),
    }


@settings(max_examples=60, deadline=None)
@given(events())
def test_round_trip(ev):
    offsets, hits = ev
    b = tok.encode(offsets, hits)
    assert (b.length <= 190).all()
    got_offsets, got = tok.decode(b.strip, b.adc, b.tdc)
    np.testing.assert_array_equal(got_offsets, offsets)
    for k in ("layer", "strip"):
        np.testing.assert_array_equal(got[k], hits[k])
    adc, tdc = hits["adc"].astype(float), hits["tdc"].astype(float)
    # exact for ADC <= 50; otherwise within half a log bin (0.077%) plus rounding to an integer
    small = adc <= 50
    np.testing.assert_array_equal(got["adc"][small], hits["adc"][small])
    assert np.all(np.abs(got["adc"][~small] - adc[~small]) <= 0.00077 * adc[~small] + 0.5 + 1e-9)
    # TDC: zero stays zero; otherwise within one log bin (0.73%) plus rounding
    np.testing.assert_array_equal(got["tdc"] == 0, tdc == 0)
    nz = tdc > 0
    assert np.all(np.abs(got["tdc"][nz] - tdc[nz]) <= 0.0073 * tdc[nz] + 0.5 + 1e-9)
    # re-encoding the decoded event gives the same tokens: decoding lands inside the original bins
    again = tok.encode(got_offsets, got)
    for k in ("strip", "adc", "tdc", "layer", "rank"):
        np.testing.assert_array_equal(getattr(again, k), getattr(b, k))


def test_decode_stops_at_eos_and_rejects_special_values():
    offsets = np.array([0, 1])
    hits = {"layer": np.array([4], np.int8), "strip": np.array([5], np.int16), "adc": np.array([100], np.int32), "tdc": np.array([900], np.int32)}
    b = tok.encode(offsets, hits)
    strip = b.strip.copy()
    strip[0, b.length[0]] = 3  # garbage after EOS is ignored
    off, got = tok.decode(strip, b.adc, b.tdc)
    assert off.tolist() == [0, 1] and got["strip"].tolist() == [5]
    adc = b.adc.copy()
    adc[0, 1 + 4] = tok.ADC.sep
    with pytest.raises(ValueError, match="special"):
        tok.decode(b.strip, adc, b.tdc)


@settings(max_examples=60, deadline=None)
@given(events(), st.floats(0.5, 10.0))
def test_energy_tokens_round_trip(ev, p):
    """The nine layer energies of any event: a layer without hits is ENERGY_ZERO, every other lands
    in the log bin whose centre is within half a bin (0.52%) of its fraction of |p| x ADC_PER_GEV,
    and rescaling the hits to the decoded energies makes each layer hold them (to the integer rounding,
    unless a hit reaches the ADC's end)."""
    offsets, hits = ev
    n = len(offsets) - 1
    momentum = np.tile([[0.0, 0.0, p]], (n, 1))
    sums = tok.layer_sums(offsets, hits["layer"], hits["adc"])
    energy = tok.encode_energies(sums, momentum)
    assert energy.shape == (n, 9)
    np.testing.assert_array_equal(energy == tok.ENERGY_ZERO, sums == 0)
    frac = sums / (p * tok.ADC_PER_GEV)
    inside = (sums > 0) & (frac >= tok.ENERGY_BINNING.lo) & (frac <= tok.ENERGY_BINNING.hi)
    half_bin = (tok.ENERGY_BINNING.hi / tok.ENERGY_BINNING.lo) ** (0.5 / tok.ENERGY_BINNING.n_bins) - 1
    decoded = tok.energy_fractions(energy)
    assert np.all(np.abs(decoded[inside] / frac[inside] - 1) <= half_bin + 1e-9)
    target = decoded * p * tok.ADC_PER_GEV
    scaled = tok.rescale_to_layer_sums(offsets, hits, target)
    have = tok.layer_sums(offsets, scaled["layer"], scaled["adc"])
    counts = tok.layer_sums(offsets, hits["layer"], np.ones(len(hits["adc"])))
    clipped = tok.layer_sums(offsets, hits["layer"], scaled["adc"] >= tok.ADC_BINNING.log.hi)  # at the ADC's saturation
    ok = (sums > 0) & (target / np.maximum(counts, 1) > 1) & (clipped == 0)  # hits that stay inside the ADC range
    # a hit scaled below 0.5 is raised to 1 ADC (the readout's least count): up to 0.5 more than rounding
    event = np.repeat(np.arange(n), np.diff(offsets))
    raw = hits["adc"] * np.where(sums > 0, target / np.maximum(sums, 1e-300), 1.0)[event, hits["layer"].astype(np.int64)]
    raised = tok.layer_sums(offsets, hits["layer"], raw < 0.5)
    assert np.all(np.abs(have[ok] - target[ok]) <= 0.5 * counts[ok] + 0.5 * raised[ok] + 1e-6)
    np.testing.assert_array_equal(have == 0, sums == 0)


@pytest.mark.geant4
def test_the_line_of_flight_finds_the_core_strip_of_every_layer(g4_train_file):
    """axis_coordinates (what value_heads_see_axis shows the value heads): in Geant4 events the
    largest strip of a layer lies within about half a strip of the photon's line of flight."""
    from hitgen.core.events import EventSet

    e = EventSet.read(g4_train_file)
    axis = tok.axis_coordinates(e.conditions["momentum"])
    assert axis.shape == (e.n_events, tok.N_LAYERS) and axis.dtype == np.float32
    event = np.repeat(np.arange(e.n_events), np.diff(e.offsets))
    layer = e.hits["layer"].astype(np.int64)
    key = event * tok.N_LAYERS + layer
    order = np.lexsort((-e.hits["adc"], key))
    first = np.ones(len(order), dtype=bool)
    first[1:] = key[order][1:] != key[order][:-1]
    core = order[first]
    offset = e.hits["strip"][core] + 0.5 - axis[event[core], layer[core]]
    assert np.mean(np.abs(offset) < 0.75) > 0.9
    assert abs(np.median(offset)) < 0.1
