"""clas12-ecal digitisation on hand-computed cases: light path, ADC scale and spread, TDC, limits."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from hitgen.detectors.clas12_ecal import geometry as det

AXIS = det.LOCAL_TO_LAB[:, 2]  # a photon along the face normal crosses every layer at the centroid


def one_hit_events(n: int, layer: int, strip: int, edep: float, p_gev: float = 5.0):
    momenta = np.tile(AXIS * p_gev, (n, 1))
    offsets = np.arange(n + 1, dtype=np.int64)
    return momenta, offsets, np.full(n, layer), np.full(n, strip), np.full(n, edep)


def test_light_path_and_flight_time_by_hand():
    # PCAL U strip 45 passes under the centroid: its centre line at d = 45.5 * 4.5 cm has half length
    # d / sqrt(3) and the centroid sits at its middle, so the light travels the half length.
    momenta = AXIS[None] * 2.0
    path, tof = det.light_path_and_time_of_flight(momenta, np.array([0, 0]), np.array([0, 1]), np.array([45, 41]))
    assert path[0] == pytest.approx(45.5 * 4.5 / math.sqrt(3))
    assert path[1] == pytest.approx(41.5 * (306 / 62) / math.sqrt(3))  # V strip 41, also centred
    depth_u = np.mean([i * 1.22 + 0.5 for i in (0, 3, 6, 9, 12)])
    assert tof[0] == pytest.approx((700 + depth_u) / 29.9792458)
    # a strip far from the shower is clipped: the light starts at the strip's far end at most
    path_far, _ = det.light_path_and_time_of_flight(momenta, np.array([0]), np.array([0]), np.array([0]))
    assert 0 <= path_far[0] <= 2 * 0.5 * 4.5 / math.sqrt(3) + 1e-9


def test_mean_adc_by_hand():
    assert det.mean_adc(np.array([10.0]), np.array([0.0]))[0] == pytest.approx(1000.0)
    assert det.mean_adc(np.array([10.0]), np.array([376.0]))[0] == pytest.approx(1000.0 / math.e)


def test_adc_and_tdc_distribution_of_one_strip():
    n, edep = 20000, 10.0
    momenta, offsets, layer, strip, e = one_hit_events(n, 0, 45, edep)
    new_offsets, hits = det.digitize(momenta, offsets, layer, strip, e, np.random.default_rng(2))
    np.testing.assert_array_equal(new_offsets, offsets)  # 10 MeV is far above threshold
    path = 45.5 * 4.5 / math.sqrt(3)
    mu = 100.0 * edep * math.exp(-path / 376.0)  # expected ADC: 730.8 counts
    npe = mu / 100.0 * 11.5  # PCAL photoelectrons: 84
    sigma = math.sqrt((100.0 / 11.5) ** 2 * npe * (1 + 0.4**2) + 3.0**2)  # Poisson x SPE width + noise
    adc = hits["adc"].astype(float)
    assert adc.mean() == pytest.approx(mu, rel=0.005)
    assert adc.std() == pytest.approx(sigma, rel=0.03)
    # TDC: flight + light propagation + walk at this amplitude, in 25 ps counts, jitter 0.3 ns
    depth = np.mean([i * 1.22 + 0.5 for i in (0, 3, 6, 9, 12)])
    t = (700 + depth) / 29.9792458 + path / 18.1 + 2.0 * np.mean(np.sqrt(100 / adc))
    tdc_ns = hits["tdc"] * 0.025
    assert tdc_ns.mean() == pytest.approx(t, abs=0.01)
    assert tdc_ns.std() == pytest.approx(0.3, rel=0.05)


def test_thresholds():
    # 0.05 MeV at 118 cm from the readout: 3.65 counts = 0.42 photoelectrons on average. A hit passes
    # the 10-count threshold only through one or more photoelectrons (8.7 counts each in PCAL) plus
    # noise; the expected fraction is the Poisson sum of Gaussian tails, computed here by hand.
    momenta, offsets, layer, strip, e = one_hit_events(4000, 0, 45, 0.05)
    _, hits = det.digitize(momenta, offsets, layer, strip, e, np.random.default_rng(3))
    assert (hits["adc"] >= det.ADC_THRESHOLD_COUNTS).all()
    mu = 0.05 * math.exp(-45.5 * 4.5 / math.sqrt(3) / 376.0) * 11.5
    gain = 100.0 / 11.5
    k = np.arange(0, 15)
    sd = np.sqrt((0.4 * gain) ** 2 * k + 3.0**2)
    expected = np.sum(stats.poisson.pmf(k, mu) * stats.norm.sf((9.5 - k * gain) / sd))
    assert expected == pytest.approx(0.18, abs=0.01)
    assert len(hits["adc"]) / 4000 == pytest.approx(expected, abs=0.02)
    # 1 MeV (73 counts): read out, but below the 100-count TDC threshold -> no time (tdc = 0)
    momenta, offsets, layer, strip, e = one_hit_events(2000, 0, 45, 1.0)
    _, hits = det.digitize(momenta, offsets, layer, strip, e, np.random.default_rng(4))
    below = hits["adc"] < det.TDC_THRESHOLD_COUNTS
    assert below.mean() > 0.8
    assert (hits["tdc"][below] == 0).all() and (hits["tdc"][~below] > 0).all()


def test_keeps_20_largest_per_layer_sorted_by_strip():
    # one event: 30 strips in ECIN U with energy rising with strip, 3 in PCAL W, given unsorted
    strips = np.r_[np.arange(30)[::-1], [5, 1, 3]]
    layers = np.r_[np.full(30, 3), np.full(3, 2)]
    edep = np.r_[np.linspace(10, 300, 30)[::-1], [50.0, 60.0, 70.0]]
    momenta = AXIS[None] * 8.0
    offsets, hits = det.digitize(momenta, np.array([0, 33]), layers, strips, edep, np.random.default_rng(5))
    assert offsets.tolist() == [0, 23]
    np.testing.assert_array_equal(hits["layer"], [2, 2, 2] + [3] * 20)
    np.testing.assert_array_equal(hits["strip"], [1, 3, 5, *range(10, 30)])
    assert hits["layer"].dtype == np.int8 and hits["strip"].dtype == np.int16 and hits["adc"].dtype == np.int32


def test_adc_saturates():
    momenta, offsets, layer, strip, e = one_hit_events(10, 0, 45, 5000.0)
    _, hits = det.digitize(momenta, offsets, layer, strip, e, np.random.default_rng(6))
    assert (hits["adc"] == det.ADC_MAX_COUNTS).all()
