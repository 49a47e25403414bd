"""ild-ecal metrics of a candidate against a reference: W1 and quantile-binned KL of every shower
observable, response and resolution per energy bin, and the high- and low-level classifiers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from hitgen.detectors.ild_ecal.geometry import N_LAYERS, THRESHOLD_MEV
from hitgen.detectors.ild_ecal.observables import ShowerObservables, response_in_bins
from hitgen.detectors.ild_ecal.views import WINDOW
from hitgen.evaluation.classifier import CLASSIFIER_SEED, auc_standard_error, classifier_auc
from hitgen.evaluation.stats import KL_BINS, quantile_kl, w1

Sample = tuple[np.ndarray, np.ndarray | None]  # values and their weights (None: one per entry)


def _finite(values: np.ndarray) -> Sample:
    return values[np.isfinite(values)], None


def _profile_layer(o: ShowerObservables) -> Sample:
    return o.hit_layer.astype(np.float64), o.hit_energy


def _profile_radial(o: ShowerObservables) -> Sample:
    return o.hit_r, o.hit_energy


# (key, label, unit, the sample of one ShowerObservables); keys are those of metrics.json (key_w1, key_kl)
OBSERVABLES: list[tuple[str, str, str, Callable[[ShowerObservables], Sample]]] = [
    ("cell_log10_energy", "cell energy spectrum, log10(E/MeV) per hit", "", lambda o: (o.cell_log10_energy, None)),
    ("hits_per_event", "hits per event", "", lambda o: (o.hits, None)),
    ("response", "visible / incident energy", "", lambda o: _finite(o.response)),
    ("longitudinal_profile", "longitudinal profile: layer, energy-weighted", "layers", _profile_layer),
    ("radial_profile", "radial profile: distance from the axis, energy-weighted", "mm", _profile_radial),
    ("cog_x", "centre of gravity x - axis", "mm", lambda o: _finite(o.cog_x)),
    ("cog_y", "centre of gravity y - axis", "mm", lambda o: _finite(o.cog_y)),
    ("cog_depth", "centre of gravity, depth z", "mm", lambda o: _finite(o.cog_depth_mm)),
    ("width_x", "width in x", "mm", lambda o: _finite(o.width_x)),
    ("width_y", "width in y", "mm", lambda o: _finite(o.width_y)),
    ("start_layer", "shower start layer", "layers", lambda o: (o.start_layer, None)),
]
LOW_LEVEL_COMPONENTS = 32  # TruncatedSVD components of the flattened voxel window


def distances(ref: ShowerObservables, cand: ShowerObservables) -> dict[str, float]:
    """W1 and quantile-binned KL(reference || candidate) of every observable."""
    out = {}
    for key, _, _, sample in OBSERVABLES:
        (a, wa), (b, wb) = sample(ref), sample(cand)
        out[f"{key}_w1"] = w1(a, b, wa, wb)
        out[f"{key}_kl"] = quantile_kl(a, b, wa, wb)
    layer_w1 = [w1(ref.layer_energy[:, i], cand.layer_energy[:, i]) for i in range(N_LAYERS)]
    out["layer_energy_w1"] = layer_w1
    out["layer_energy_w1_mean"] = float(np.nanmean(layer_w1)) if np.isfinite(layer_w1).any() else float("nan")
    return out


def _summary(ratio: np.ndarray) -> tuple[float, float]:
    finite = ratio[np.isfinite(ratio)]
    return (float(finite.mean()), float(np.abs(finite - 1).max())) if finite.size else (float("nan"), float("nan"))


def response(ref: ShowerObservables, cand: ShowerObservables, edges: np.ndarray) -> dict[str, Any]:
    """Response (visible / incident energy) and resolution (its std / mean; and rms90, that of the
    narrowest 90%) per energy bin, their ratios candidate / reference, and the mean and largest
    deviation of those ratios."""
    r, c = response_in_bins(ref, edges), response_in_bins(cand, edges)
    with np.errstate(divide="ignore", invalid="ignore"):
        response_ratio, resolution_ratio, rms90_ratio = c.response / r.response, c.resolution / r.resolution, c.rms90 / r.rms90
        response_ratio_error = response_ratio * np.hypot(c.response_error / c.response, r.response_error / r.response)
        resolution_ratio_error = resolution_ratio * np.hypot(c.resolution_error / c.resolution, r.resolution_error / r.resolution)
    samples = (("reference", r), ("candidate", c))
    keys = ("response", "resolution", "response_error", "resolution_error", "rms90")
    out: dict[str, Any] = {}
    out["response_ratio_mean"], out["response_max_dev"] = _summary(response_ratio)
    out["resolution_ratio_mean"], out["resolution_max_dev"] = _summary(resolution_ratio)
    out["rms90_ratio_mean"], out["rms90_max_dev"] = _summary(rms90_ratio)
    out["energy_bins"] = {
        "edges": edges.tolist(),
        "n_reference": r.n.tolist(),
        "n_candidate": c.n.tolist(),
        **{f"{k}_{who}": getattr(x, k).tolist() for who, x in samples for k in keys},
        "response_ratio": response_ratio.tolist(),
        "response_ratio_error": response_ratio_error.tolist(),
        "resolution_ratio": resolution_ratio.tolist(),
        "resolution_ratio_error": resolution_ratio_error.tolist(),
        "rms90_ratio": rms90_ratio.tolist(),
    }
    return out


def high_level_groups(o: ShowerObservables) -> dict[str, np.ndarray]:
    """CaloChallenge's high-level features in groups: energy per layer, centre and width in x and y
    per layer (from the axis), the total energy and the response (total / incident energy, which a
    tree finds hard to form from the two energies itself), sparsity per layer."""
    total = o.layer_energy.sum(axis=1)
    return {
        "layer energy": o.layer_energy,
        "layer centre x": o.layer_cx,
        "layer centre y": o.layer_cy,
        "layer width x": o.layer_wx,
        "layer width y": o.layer_wy,
        "total energy, response": np.column_stack([total, total / o.energy]),
        "sparsity per layer": o.sparsity,
    }


def high_level_features(o: ShowerObservables) -> np.ndarray:
    """The high-level groups beside the conditions (energy, direction, entry point): (N, 7 + 30 x 6 + 2)."""
    return np.column_stack([o.conditions[:, :7], *high_level_groups(o).values()]).astype(np.float64)


def _window_matrix(o: ShowerObservables):
    """The 30 x 30 x 30 voxel window of every event as a sparse (N, 27000) matrix of log10(1 + E / threshold)."""
    from scipy.sparse import csr_matrix

    inside = o.hit_window >= 0
    event = o.event_of_hit()[inside]
    values = np.log10(1.0 + o.hit_energy[inside] / THRESHOLD_MEV)
    return csr_matrix((values, (event, o.hit_window[inside])), shape=(o.n, N_LAYERS * WINDOW * WINDOW))


def low_level_features(ref: ShowerObservables, cand: ShowerObservables, seed: int = CLASSIFIER_SEED) -> tuple[np.ndarray, np.ndarray]:
    """The voxel window (log-scaled energies, flattened) reduced to LOW_LEVEL_COMPONENTS components
    by a truncated SVD fitted on both samples together (no labels), beside the conditions."""
    from scipy.sparse import vstack
    from sklearn.decomposition import TruncatedSVD
    from threadpoolctl import threadpool_limits

    both = vstack([_window_matrix(ref), _window_matrix(cand)]).tocsr()
    used = np.unique(both.indices)  # voxels hit in either sample: the rest add nothing
    both = both[:, used] if used.size else both
    k = max(1, min(LOW_LEVEL_COMPONENTS, both.shape[0] - 1, both.shape[1] - 1))
    # small dense products: threads only contend (15 times slower on a busy 2-core machine)
    with threadpool_limits(1, user_api="blas"):
        reduced = TruncatedSVD(n_components=k, random_state=seed).fit_transform(both)
    return np.hstack([ref.conditions[:, :7], reduced[: ref.n]]), np.hstack([cand.conditions[:, :7], reduced[ref.n :]])


def classifiers(ref: ShowerObservables, cand: ShowerObservables, paired: bool) -> dict[str, Any]:
    """AUCs of the shared classifier on the high-level features, on each of their groups alone (which
    features tell the candidate apart) and on the voxel window, with the
    statistical error of an uninformative classifier at the test size. Paired: the candidate has the
    reference's conditions event by event, and both members of a pair go to the same half."""
    from threadpoolctl import threadpool_limits

    conditions = ref.conditions if paired else None
    n = min(ref.n, cand.n)
    low_ref, low_cand = low_level_features(ref, cand)
    # one OpenMP thread: the same AUCs, and no threads spinning against a busy machine (measured
    # 2.3 s with one, 30 s with two, for 400 + 400 events while a model trained on the other core)
    with threadpool_limits(1, user_api="openmp"):
        high = classifier_auc(high_level_features(ref), high_level_features(cand), conditions)
        low = classifier_auc(low_ref, low_cand, conditions)
        # what separates them: each group of high-level features alone, beside the conditions
        by_group = {
            name: classifier_auc(np.column_stack([ref.conditions[:, :7], a]), np.column_stack([cand.conditions[:, :7], b]), conditions)
            for (name, a), b in zip(high_level_groups(ref).items(), high_level_groups(cand).values(), strict=True)
        }
    return {
        "classifier_auc": high,
        "classifier_auc_low_level": low,
        "classifier_auc_by_group": by_group,
        # the test half of each sample: n - n // 2 events (exact when every event has its own conditions)
        "classifier_auc_error": auc_standard_error(n - n // 2),
        "classifier_n_test": n - n // 2,
    }


def compare(ref: ShowerObservables, cand: ShowerObservables, edges: np.ndarray, paired: bool) -> dict[str, Any]:
    """Every metric of a candidate against a reference, the response binned by edges."""
    return {**distances(ref, cand), **response(ref, cand, edges), **classifiers(ref, cand, paired)}


def settings_note() -> dict[str, Any]:
    return {"kl_bins": KL_BINS, "low_level_components": LOW_LEVEL_COMPONENTS}
