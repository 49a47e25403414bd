"""odd-tracker tokens as in the SiliconAI paper: every feature of a hit is one token of one shared
dictionary, and a track is the flat sequence of its hits' features.

A track is a sequence of rows of COLUMNS = (index, module, u, v, px, py, pz):
- the start row carries the initial conditions: index 0, the particle (type and charge) in the
  module column, the vertex in the position columns (u = vertex x, v = vertex z: the samples'
  vertices lie on the beam line, so x and y are 0), the initial momentum;
- one row per hit: its index (1, 2, ...), its module, its local position (mm) and the momentum after
  the hit (GeV);
- the end row: the next index and END, nothing after it (END doubles as the padding token).
Discrete features (index, module, particle) have one token per value, made unique by offsets in the
dictionary; continuous ones are rounded to two decimals (0.01 mm, 0.01 GeV) and have one token per
hundredth between the smallest and the largest value of the training data (the `Vocabulary`,
stored in the model's config). Every column owns one contiguous block of the dictionary: the block
is the column's allowed-token mask, at sampling and (a choice, see hitgen.families.siliconai.model) in the
loss. The module column's block starts with END.

The rows are in the lab frame, as in the paper (no rotation to the initial azimuth)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from hitgen.core.csr import offsets_from_counts
from hitgen.core.events import EventSet
from hitgen.detectors.odd_tracker import geometry as odd

COLUMNS = ("index", "module", "u", "v", "px", "py", "pz")
CONTINUOUS = ("u", "v", "px", "py", "pz")
ROW = len(COLUMNS)
SCALE = 100  # two decimals
PAD = 0  # padding: never a target, never drawn
PARTICLES = (11, -11, 13, -13, 211, -211)  # PDG codes of the start row's particle tokens
MAX_HITS = 40  # a generated track ends here at the latest
N_INDEX = MAX_HITS + 2  # index tokens 0 .. MAX_HITS + 1 (the end row's index)


@dataclass(frozen=True)
class Vocabulary:
    """The shared dictionary: PAD, the particles, the indices, END + the modules, then one block per
    continuous column (its lowest value in hundredths and its number of tokens)."""

    n_modules: int
    low: dict[str, int]  # column -> smallest value in hundredths
    count: dict[str, int]  # column -> tokens

    @property
    def particle_offset(self) -> int:
        return 1

    @property
    def index_offset(self) -> int:
        return 1 + len(PARTICLES)

    @property
    def end(self) -> int:
        return self.index_offset + N_INDEX

    @property
    def module_offset(self) -> int:
        return self.end + 1

    def offset(self, column: str) -> int:
        o = self.module_offset + self.n_modules
        for c in CONTINUOUS:
            if c == column:
                return o
            o += self.count[c]
        raise KeyError(column)

    @property
    def size(self) -> int:
        return self.offset(CONTINUOUS[-1]) + self.count[CONTINUOUS[-1]]

    def block(self, column: str) -> tuple[int, int]:
        """The contiguous token range [lo, hi) that a token of this column (after the start row) may take."""
        if column == "index":
            return self.index_offset, self.index_offset + N_INDEX
        if column == "module":
            return self.end, self.module_offset + self.n_modules
        lo = self.offset(column)
        return lo, lo + self.count[column]

    def blocks(self) -> list[tuple[int, int]]:
        return [self.block(c) for c in COLUMNS]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Vocabulary:
        return cls(int(d["n_modules"]), {k: int(v) for k, v in d["low"].items()}, {k: int(v) for k, v in d["count"].items()})

    @classmethod
    def from_events(cls, events: EventSet) -> Vocabulary:
        """One token per hundredth between the smallest and largest value of each continuous column."""
        values = _continuous(events)
        low = {c: int(v.min()) for c, v in values.items()}
        count = {c: int(v.max()) - low[c] + 1 for c, v in values.items()}
        return cls(len(odd.build_modules()), low, count)


def _hundredths(x: np.ndarray) -> np.ndarray:
    return np.rint(np.asarray(x, np.float64) * SCALE).astype(np.int64)


def _continuous(events: EventSet) -> dict[str, np.ndarray]:
    """Every continuous column's values in hundredths, start rows and hits together."""
    c, h = events.conditions, events.hits
    starts = {"u": c["vertex"][:, 0], "v": c["vertex"][:, 2], "px": c["momentum"][:, 0], "py": c["momentum"][:, 1], "pz": c["momentum"][:, 2]}
    hits = {"u": h["local_u"], "v": h["local_v"], "px": h["px"], "py": h["py"], "pz": h["pz"]}
    return {k: _hundredths(np.concatenate([starts[k], hits[k]])) for k in CONTINUOUS}


def particle_tokens(vocab: Vocabulary, pdg: np.ndarray) -> np.ndarray:
    pdg = np.asarray(pdg, np.int64)
    known = np.isin(pdg, PARTICLES)
    if not known.all():
        raise ValueError(f"particle PDG {int(pdg[~known][0])} has no token (known: {list(PARTICLES)})")
    return vocab.particle_offset + (pdg[:, None] == np.array(PARTICLES)).argmax(1)


CONDITION_SLACK = 0.01  # start-row values this fraction of a column's range outside it take its end token


def value_tokens(vocab: Vocabulary, column: str, values: np.ndarray, slack: float = 0.0) -> np.ndarray:
    """Tokens of a continuous column; values outside the vocabulary's range by more than `slack` of
    the range are an error, those within it take the nearest end."""
    k = _hundredths(values) - vocab.low[column]
    n = vocab.count[column]
    margin = int(slack * n)
    bad = (k < -margin) | (k >= n + margin)
    if bad.any():
        v = float(np.asarray(values)[bad][0])
        lo, hi = vocab.low[column] / SCALE, (vocab.low[column] + vocab.count[column] - 1) / SCALE
        raise ValueError(f"{column} = {v:.2f} lies outside the vocabulary's range [{lo:.2f}, {hi:.2f}]")
    return vocab.offset(column) + np.clip(k, 0, n - 1)


def start_rows(vocab: Vocabulary, conditions: dict[str, np.ndarray]) -> np.ndarray:
    """(N, ROW) tokens of the start rows. A condition just outside the training data's range (by at
    most CONDITION_SLACK of it: a sample of the same distribution) takes the nearest end token; one
    further out is an error (ValueError)."""
    vx, mom = conditions["vertex"], conditions["momentum"]
    n = len(mom)
    return np.stack(
        [
            np.full(n, vocab.index_offset, np.int64),
            particle_tokens(vocab, conditions["pdg"]),
            value_tokens(vocab, "u", vx[:, 0], CONDITION_SLACK),
            value_tokens(vocab, "v", vx[:, 2], CONDITION_SLACK),
            value_tokens(vocab, "px", mom[:, 0], CONDITION_SLACK),
            value_tokens(vocab, "py", mom[:, 1], CONDITION_SLACK),
            value_tokens(vocab, "pz", mom[:, 2], CONDITION_SLACK),
        ],
        1,
    )


def encode(events: EventSet, vocab: Vocabulary) -> tuple[np.ndarray, np.ndarray]:
    """Every track as its flat token sequence: (N, L) int32, END-padded, and each track's length
    (7 per row for the start and the hits, 2 for the end row)."""
    n = events.n_events
    counts = events.hits_per_event()
    if counts.size and counts.max() > MAX_HITS:
        raise ValueError(f"a track has {int(counts.max())} hits; the tokenizer allows at most {MAX_HITS}")
    h = events.hits
    modules = odd.build_modules()
    rows = np.stack(
        [
            vocab.index_offset + 1 + (np.arange(events.n_hits) - np.repeat(events.offsets[:-1], counts)),
            vocab.module_offset + odd.module_index(modules, h["geometry_id"]),
            value_tokens(vocab, "u", h["local_u"]),
            value_tokens(vocab, "v", h["local_v"]),
            value_tokens(vocab, "px", h["px"]),
            value_tokens(vocab, "py", h["py"]),
            value_tokens(vocab, "pz", h["pz"]),
        ],
        1,
    )
    length = ROW * (counts + 1) + 2
    out = np.full((n, int(length.max()) if n else 2), PAD, np.int32)
    out[:, :ROW] = start_rows(vocab, events.conditions)
    track = np.repeat(np.arange(n), counts)
    col = ROW * (1 + np.arange(events.n_hits) - np.repeat(events.offsets[:-1], counts))
    for j in range(ROW):
        out[track, col + j] = rows[:, j]
    end_at = ROW * (counts + 1)
    out[np.arange(n), end_at] = vocab.index_offset + counts + 1
    out[np.arange(n), end_at + 1] = vocab.end
    return out, length.astype(np.int64)


def decode(vocab: Vocabulary, sequences: list[np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Token sequences (each: the start row, hit rows, optionally the end row) -> CSR offsets and the
    odd-tracker hit fields. Only the hit rows are read; their tokens must lie in their columns' blocks."""
    hit_rows = [s[ROW : ROW * (len(s) // ROW)].reshape(-1, ROW) for s in sequences]
    hit_rows = [r[r[:, 1] != vocab.end] for r in hit_rows]
    counts = np.array([len(r) for r in hit_rows], np.int64)
    rows = np.concatenate(hit_rows) if hit_rows else np.zeros((0, ROW), np.int64)
    rows = rows.reshape(-1, ROW).astype(np.int64)
    for j, c in enumerate(COLUMNS[1:], 1):
        lo, hi = vocab.block(c)
        if c == "module":
            lo += 1  # END is no module
        if ((rows[:, j] < lo) | (rows[:, j] >= hi)).any():
            raise ValueError(f"a hit's {c} token lies outside its column's block")
    modules = odd.build_modules()

    def value(c: str, j: int) -> np.ndarray:
        return ((rows[:, j] - vocab.offset(c) + vocab.low[c]) / SCALE).astype(np.float32)

    hits = {
        "geometry_id": modules.geometry_id[rows[:, 1] - vocab.module_offset],
        "local_u": value("u", 2),
        "local_v": value("v", 3),
        "px": value("px", 4),
        "py": value("py", 5),
        "pz": value("pz", 6),
    }
    return offsets_from_counts(counts), hits
