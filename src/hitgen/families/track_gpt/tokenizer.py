"""odd-tracker tokens for the fused-hit track GPT: every hit as the deviation from where the track
would go without material.

From the state after the previous hit (at the start: the vertex and initial momentum) the helix in
the field is propagated to the modules it crosses next (tracking.propagate: up to K candidates in
its own layer and the next two, in path order). A hit is then five tokens and a choice:
- which: the candidate it lands on (0 = the first crossed), or END when the particle leaves;
- du, dv: its local position minus the helix crossing of that module (mm);
- dp: its relative momentum loss since the previous state, 1 - |p| / |p_prev|;
- dphi, dtheta: the change of the momentum direction (azimuth, polar angle) relative to the
  propagated helix at the crossing.
The helix is exact physics for a particle in vacuum; what a model has to learn is what material
does (multiple scattering, energy loss, bremsstrahlung, decays), which modules are hit where they
overlap, and when the track ends. Every deviation is binned with mirrored hybrid binnings (linear
near zero, then logarithmic), so that micron residuals and centimetre kinks are both resolved to a
few per cent of their size.

Frames: the module geometry and propagation are in the lab; everything the model sees is free of
the particle's initial azimuth phi0 (positions and directions relative to phi0, local module
coordinates), the "rotated frame": the barrel is nearly phi-symmetric, so a model need
not learn the azimuth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hitgen.core.binning import SignedBinning, signed_hybrid
from hitgen.core.csr import offsets_from_counts
from hitgen.core.events import EventSet
from hitgen.detectors.odd_tracker import geometry as odd
from hitgen.detectors.odd_tracker.tracking.helix import wrap
from hitgen.detectors.odd_tracker.tracking.propagate import N_LAYERS, Crossings, LayerGrid, crossings_ahead

K = 6  # candidates per step
END = K  # the `which` token that ends a track
WHICH_VOCAB = K + 1
VALUE_STREAMS = ("du", "dv", "dp", "dphi", "dtheta")
BINNINGS: dict[str, SignedBinning] = {
    "du": signed_hybrid(1e-3, 50.0, 10, 290),  # mm
    "dv": signed_hybrid(1e-3, 50.0, 10, 290),  # mm
    "dp": signed_hybrid(1e-7, 1.0, 10, 290),  # fraction of |p|
    "dphi": signed_hybrid(1e-7, 3.2, 10, 290),  # rad
    "dtheta": signed_hybrid(1e-7, 3.2, 10, 290),  # rad
}
PARTICLE_TYPES = {11: 0, 13: 1, 211: 2}  # |PDG| -> particle embedding index
MAX_HITS = 40  # a generated track stops here at the latest
N_STATE_FEATURES = 7
N_CANDIDATE_FEATURES = 5
N_FEATURES = N_STATE_FEATURES + K * N_CANDIDATE_FEATURES
N_CONDITION_FEATURES = 4


def particle_type(pdg: np.ndarray) -> np.ndarray:
    a = np.abs(np.asarray(pdg))
    unknown = ~np.isin(a, list(PARTICLE_TYPES))
    if unknown.any():
        raise ValueError(f"particle PDG {int(np.asarray(pdg)[unknown][0])} has no embedding (known: {sorted(PARTICLE_TYPES)})")
    return np.vectorize(PARTICLE_TYPES.get, otypes=[np.int64])(a) if a.size else np.zeros(0, np.int64)


def condition_features(conditions: dict[str, np.ndarray]) -> np.ndarray:
    """(N, 4): charge, 100 GeV / pT, cot theta, z_vertex / 50 mm (phi0 is not a condition: the frame)."""
    p = conditions["momentum"].astype(np.float64)
    pt = np.hypot(p[:, 0], p[:, 1])
    return np.stack([conditions["charge"].astype(np.float64), 100.0 / pt, p[:, 2] / pt, conditions["vertex"][:, 2] / 50.0], 1).astype(np.float32)


@dataclass
class Walk:
    """States of a batch of tracks as they are walked hit by hit (lab frame)."""

    position: np.ndarray  # (R, 3) mm
    momentum: np.ndarray  # (R, 3) GeV
    charge: np.ndarray  # (R,)
    module: np.ndarray  # (R,) current module (-1 at the vertex)
    layer: np.ndarray  # (R,) current layer (-1 at the vertex)
    phi0: np.ndarray  # (R,) initial momentum azimuth: the frame
    p0: np.ndarray  # (R,) initial |p|

    @classmethod
    def start(cls, conditions: dict[str, np.ndarray]) -> Walk:
        mom = conditions["momentum"].astype(np.float64)
        n = len(mom)
        return cls(
            conditions["vertex"].astype(np.float64).copy(),
            mom.copy(),
            conditions["charge"].astype(np.float64),
            np.full(n, -1),
            np.full(n, -1),
            np.arctan2(mom[:, 1], mom[:, 0]),
            np.linalg.norm(mom, axis=1),
        )

    FIELDS = ("position", "momentum", "charge", "module", "layer", "phi0", "p0")

    def subset(self, rows: np.ndarray) -> Walk:
        return Walk(*(getattr(self, f)[rows] for f in self.FIELDS))

    def assign(self, rows: np.ndarray, other: Walk) -> None:
        """Write `other` (a subset, advanced) back into these rows."""
        for f in self.FIELDS:
            getattr(self, f)[rows] = getattr(other, f)


class Geometry:
    """The modules and their layer grid, built once."""

    def __init__(self) -> None:
        self.modules = odd.build_modules()
        self.grid = LayerGrid.of(self.modules)
        self.field = odd.FIELD_TESLA

    def candidates(self, walk: Walk) -> Crossings:
        return crossings_ahead(self.modules, self.grid, walk.position, walk.momentum, walk.charge, walk.module, walk.layer, self.field, k=K)

    def features(self, walk: Walk, cr: Crossings) -> np.ndarray:
        """(R, N_FEATURES) float32: the state in the rotated frame, then per candidate whether it
        exists, its layer step, its crossing's local u and v over the module's half sizes, and its
        path length (per 100 mm)."""
        pos, mom = walk.position, walk.momentum
        pt = np.hypot(mom[:, 0], mom[:, 1])
        rel = lambda a: wrap(a - walk.phi0)  # noqa: E731
        state = np.stack(
            [
                np.hypot(pos[:, 0], pos[:, 1]) / 1000.0,
                pos[:, 2] / 1000.0,
                rel(np.arctan2(pos[:, 1], pos[:, 0])) * 100.0,
                rel(np.arctan2(mom[:, 1], mom[:, 0])) * 100.0,
                mom[:, 2] / np.maximum(pt, 1e-9),
                (np.linalg.norm(mom, axis=1) / walk.p0 - 1.0) * 100.0,
                walk.layer / N_LAYERS,
            ],
            1,
        )
        m = self.modules
        exists = cr.module >= 0
        safe = np.maximum(cr.module, 0)
        cand = np.stack(
            [
                exists.astype(np.float64),
                np.where(exists, m.layer[safe] - walk.layer[:, None], 0),
                np.where(exists, cr.u / m.half_u[safe], 0.0),
                np.where(exists, cr.v / m.half_v[safe], 0.0),
                np.where(exists, np.minimum(cr.s, 1e4) / 100.0, 0.0),
            ],
            2,
        ).reshape(len(pos), -1)
        return np.concatenate([state, cand], 1).astype(np.float32)

    def advance(self, walk: Walk, cr: Crossings, which: np.ndarray, values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Place the hits chosen by `which` (< END) and the decoded deviations; update `walk` in place
        and return the hits' event-file fields."""
        r = np.arange(len(which))
        module = cr.module[r, which]
        m = self.modules
        u = np.clip(cr.u[r, which] + values["du"], -m.half_u[module], m.half_u[module])
        v = np.clip(cr.v[r, which] + values["dv"], -m.half_v[module], m.half_v[module])
        p_prev = np.linalg.norm(walk.momentum, axis=1)
        p_new = p_prev * np.clip(1.0 - values["dp"], 1e-6, None)
        pt_prev = np.hypot(walk.momentum[:, 0], walk.momentum[:, 1])
        theta = np.arctan2(pt_prev, walk.momentum[:, 2]) + values["dtheta"]
        phi = cr.phi_dir[r, which] + values["dphi"]
        momentum = p_new[:, None] * np.stack([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)], 1)
        walk.position = odd.to_global(m, module, np.stack([u, v], 1))
        walk.momentum, walk.module, walk.layer = momentum, module, m.layer[module]
        return {"module": module, "local_u": u, "local_v": v, "momentum": momentum}


@dataclass
class TrackTokens:
    """Tokenised tracks: per event T = hits + 1 positions (the start, then every hit); the targets
    at position t are the tokens of hit t+1 (END at the last position)."""

    features: np.ndarray  # (N, T, N_FEATURES) float32, padded with 0
    which: np.ndarray  # (N, T) int16 targets; -1 = padding
    values: dict[str, np.ndarray]  # stream -> (N, T) int16 targets (0 at END and padding)
    length: np.ndarray  # (N,) positions used (hits + 1)
    conditions: np.ndarray  # (N, N_CONDITION_FEATURES) float32
    particle: np.ndarray  # (N,) int64
    unmatched: int  # hits that were not among the candidates (their tracks end there)


def encode(events: EventSet, geometry: Geometry | None = None) -> TrackTokens:
    """Tokens of every track; a hit that is not among the candidates of its step (none in the
    Geant4 muon samples; possible after a hard kink) ends its track there (counted in `unmatched`)."""
    geo = geometry or Geometry()
    n, off = events.n_events, events.offsets
    counts = np.diff(off)
    t_max = int(counts.max(initial=0)) + 1
    features = np.zeros((n, t_max, N_FEATURES), np.float32)
    which = np.full((n, t_max), -1, np.int16)
    values = {k: np.zeros((n, t_max), np.int16) for k in VALUE_STREAMS}
    length = np.zeros(n, np.int64)
    h = events.hits
    module = odd.module_index(geo.modules, h["geometry_id"])
    momentum = np.stack([h["px"], h["py"], h["pz"]], 1).astype(np.float64)
    walk = Walk.start(events.conditions)
    alive = np.ones(n, bool)
    unmatched = 0
    for i in range(t_max):
        act = np.flatnonzero(alive)
        if not len(act):
            break
        sub = walk.subset(act)
        cr = geo.candidates(sub)
        features[act, i] = geo.features(sub, cr)
        length[act] = i + 1
        has_hit = counts[act] > i
        hit = off[act] + i
        match = (cr.module == np.where(has_hit, module[np.minimum(hit, len(module) - 1)], -2)[:, None]) & (cr.module >= 0)
        found = match.any(1)
        unmatched += int((has_hit & ~found).sum())
        ends = ~(has_hit & found)
        which[act[ends], i] = END
        alive[act[ends]] = False
        go = np.flatnonzero(~ends)
        if not len(go):
            continue
        a, k, hi = act[go], match[go].argmax(1), hit[go]
        r = np.arange(len(go))
        which[a, i] = k
        p_prev = np.linalg.norm(sub.momentum[go], axis=1)
        pt_prev = np.hypot(sub.momentum[go, 0], sub.momentum[go, 1])
        p_hit = momentum[hi]
        dev = {
            "du": h["local_u"][hi] - cr.u[go][r, k],
            "dv": h["local_v"][hi] - cr.v[go][r, k],
            "dp": 1.0 - np.linalg.norm(p_hit, axis=1) / p_prev,
            "dphi": wrap(np.arctan2(p_hit[:, 1], p_hit[:, 0]) - cr.phi_dir[go][r, k]),
            "dtheta": np.arctan2(np.hypot(p_hit[:, 0], p_hit[:, 1]), p_hit[:, 2]) - np.arctan2(pt_prev, sub.momentum[go, 2]),
        }
        for name in VALUE_STREAMS:
            values[name][a, i] = BINNINGS[name].encode(dev[name])
        walk.position[a] = odd.to_global(geo.modules, module[hi], np.stack([h["local_u"][hi], h["local_v"][hi]], 1))
        walk.momentum[a], walk.module[a], walk.layer[a] = p_hit, module[hi], geo.modules.layer[module[hi]]
    return TrackTokens(features, which, values, length, condition_features(events.conditions), particle_type(events.conditions["pdg"]), unmatched)


def decode(tokens: TrackTokens, conditions: dict[str, np.ndarray], geometry: Geometry | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Tracks back from their tokens and conditions (the inverse of `encode` up to the binning):
    CSR offsets and per-hit module row, local_u, local_v and momentum (H, 3)."""
    geo = geometry or Geometry()
    n = len(tokens.length)
    walk = Walk.start(conditions)
    per_step: list[tuple[np.ndarray, dict[str, np.ndarray]]] = []
    alive = np.arange(n)
    for i in range(tokens.which.shape[1]):
        w = tokens.which[alive, i]
        go = (w >= 0) & (w < END)
        alive, walk = alive[go], walk.subset(np.flatnonzero(go))
        if not len(alive):
            break
        cr = geo.candidates(walk)
        values = {k: BINNINGS[k].decode(tokens.values[k][alive, i]) for k in VALUE_STREAMS}
        per_step.append((alive, geo.advance(walk, cr, tokens.which[alive, i].astype(np.int64), values)))
    counts = np.zeros(n, np.int64)
    for rows, _ in per_step:
        counts[rows] += 1
    offsets = offsets_from_counts(counts)
    fill = offsets[:-1].copy()
    h = int(offsets[-1])
    out = {"module": np.zeros(h, np.int64), "local_u": np.zeros(h), "local_v": np.zeros(h), "momentum": np.zeros((h, 3))}
    for rows, hits in per_step:  # step by step: every event's hits stay in flight order
        at = fill[rows]
        for k in out:
            out[k][at] = hits[k]
        fill[rows] += 1
    return offsets, out
