"""Every bad input ends in one `error:` line and a non-zero exit, and leaves nothing behind.

One table: each case builds its input (tiny files, no Geant4), runs the command in this process
through hitgen.cli.main, and checks the exit code, the single error line, the absence of a
traceback, and that no output (or partial output) appeared. Cases are cheap: the shipped models
are only loaded, never asked to generate.
"""

from __future__ import annotations

import json
import shutil
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest

from hitgen.core.events import EventSet
from hitgen.detectors.clas12_ecal import geometry as clas12
from hitgen.detectors.odd_tracker import geometry as odd
from hitgen.models.io import SHIPPED

CLAS12_MODEL = SHIPPED / "clas12-ecal-gpt"


def clas12_events(n: int = 30, seed: int = 0) -> EventSet:
    """n small valid clas12-ecal events (one hit per readout layer)."""
    cond = clas12.sample_conditions(n, np.random.default_rng(seed))
    layer = np.tile(np.arange(9, dtype=np.int8), n)
    hits = {"layer": layer, "strip": np.full(9 * n, 3, np.int16), "adc": np.full(9 * n, 500, np.int32), "tdc": np.full(9 * n, 1000, np.int32)}
    return EventSet("clas12-ecal", clas12.INFO.spec(), cond, np.arange(0, 9 * n + 1, 9, dtype=np.int64), hits, "test", seed=seed)


def odd_conditions(n: int = 20) -> EventSet:
    cond = odd.sample_conditions(n, np.random.default_rng(1), particle="mu+-", phi_range=None)
    empty = {f.name: np.zeros(0, f.np_dtype) for f in odd.INFO.hit_fields}
    return EventSet("odd-tracker", odd.INFO.spec(), cond, np.zeros(n + 1, np.int64), empty, "conditions only")


def with_hits(**changes) -> Callable[[Path], list[str]]:
    def make(d: Path) -> list[str]:
        e = clas12_events()
        for k, v in changes.items():
            e.hits[k] = e.hits[k].copy()
            e.hits[k][0] = v
        return [str(e.write(d / "bad.h5"))]

    return make


def with_momentum(value) -> Callable[[Path], EventSet]:
    e = clas12_events()
    e.conditions["momentum"] = e.conditions["momentum"].copy()
    e.conditions["momentum"][3] = value
    return e


def write(e: EventSet, d: Path, name: str = "in.h5") -> str:
    return str(e.write(d / name, overwrite=True))


def forged_size(d: Path) -> str:
    """A file of a few KB that declares conditions of shape (2e9, 3)."""
    path = Path(write(clas12_events(), d, "forged.h5"))
    with h5py.File(path, "a") as f:
        del f["conditions/momentum"]
        f.create_dataset("conditions/momentum", shape=(2_000_000_000, 3), dtype="float32", chunks=(65536, 3), compression="gzip")
    return str(path)


def relabelled(d: Path, name: str = "odd-tracker") -> str:
    """A clas12-ecal file whose attributes claim another detector (`name`)."""
    path = Path(write(clas12_events(), d, f"{name}.h5"))
    with h5py.File(path, "a") as f:
        spec = json.loads(f.attrs["detector_spec"])
        spec["name"] = name
        f.attrs["detector"] = name
        f.attrs["detector_spec"] = json.dumps(spec)
    return str(path)


def tampered_model(change: Callable[[dict], object]) -> Callable[[Path], str]:
    def make(d: Path) -> str:
        folder = d / "model"
        shutil.copytree(CLAS12_MODEL, folder)
        cfg = json.loads((folder / "config.json").read_text())
        out = change(cfg)
        (folder / "config.json").write_text(json.dumps(cfg if out is None else out))
        return str(folder)

    return make


def set_key(path: tuple[str, ...], value) -> Callable[[dict], None]:
    def change(cfg: dict) -> None:
        d = cfg
        for k in path[:-1]:
            d = d[k]
        d[path[-1]] = value

    return change


TINY = '[model]\narchitecture = "clas12-gpt"\nd_model = 16\nn_blocks = 1\nn_heads = 2\nd_ff = 32\n[train]\nbatch_size = 8\nmicro_batch_size = 8\nmax_steps = 2\n'


def config(text: str) -> Callable[[Path], str]:
    def make(d: Path) -> str:
        (d / "c.toml").write_text(text)
        return str(d / "c.toml")

    return make


# (name, argv builder (folder -> argv), fragment of the error line, paths that must not exist afterwards)
CASES: list[tuple[str, Callable[[Path], list[str]], str, tuple[str, ...]]] = [
    (
        "generate: NaN momentum",
        lambda d: ["generate", "clas12-ecal-gpt", "--conditions", write(with_momentum(np.nan), d), "--out", f"{d}/o.h5"],
        "non-finite",
        ("o.h5",),
    ),
    (
        "generate: inf momentum",
        lambda d: ["generate", "clas12-ecal-gpt", "--conditions", write(with_momentum(np.inf), d), "--out", f"{d}/o.h5"],
        "non-finite",
        ("o.h5",),
    ),
    (
        "generate: 1e30 GeV",
        lambda d: ["generate", "clas12-ecal-gpt", "--conditions", write(with_momentum(1e30), d), "--out", f"{d}/o.h5"],
        "outside its range",
        ("o.h5",),
    ),
    (
        "generate: --temperature nan",
        lambda d: ["generate", "clas12-ecal-gpt", "--momentum-range", "1:2", "-n", "5", "--temperature", "nan", "--out", f"{d}/o.h5"],
        "--temperature",
        ("o.h5",),
    ),
    (
        "generate: --temperature inf",
        lambda d: ["generate", "clas12-ecal-gpt", "--momentum-range", "1:2", "-n", "5", "--temperature", "inf", "--out", f"{d}/o.h5"],
        "--temperature",
        ("o.h5",),
    ),
    (
        "generate: --seed -1",
        lambda d: ["generate", "clas12-ecal-gpt", "--momentum-range", "1:2", "-n", "5", "--seed", "-1", "--out", f"{d}/o.h5"],
        "--seed",
        ("o.h5",),
    ),
    (
        "generate: seed 1e23",
        lambda d: ["generate", "clas12-ecal-gpt", "--momentum-range", "1:2", "-n", "5", "--seed", str(10**23), "--out", f"{d}/o.h5"],
        "--seed",
        ("o.h5",),
    ),
    (
        "generate: --unit-events 0",
        lambda d: ["generate", "clas12-ecal-gpt", "--momentum-range", "1:2", "-n", "5", "--units", "1/1", "--unit-events", "0", "--out", f"{d}/o.h5"],
        "--unit-events 0",
        ("o.h5",),
    ),
    (
        "generate: --unit-events without units",
        lambda d: ["generate", "clas12-ecal-gpt", "--momentum-range", "1:2", "-n", "5", "--unit-events", "100", "--out", f"{d}/o.h5"],
        "--unit-events goes with",
        ("o.h5",),
    ),
    ("simulate: seed 1e23", lambda d: ["simulate", "clas12-ecal", "-n", "5", "--seed", str(10**23), "--out", f"{d}/o.h5"], "--seed", ("o.h5",)),
    (
        "generate: --conditions with --events",
        lambda d: ["generate", "clas12-ecal-gpt", "--conditions", write(clas12_events(), d), "-n", "5", "--out", f"{d}/o.h5"],
        "--events does not apply",
        ("o.h5",),
    ),
    (
        "generate: --conditions with --momentum-range",
        lambda d: ["generate", "clas12-ecal-gpt", "--conditions", write(clas12_events(), d), "--momentum-range", "7:8", "--out", f"{d}/o.h5"],
        "does not apply",
        ("o.h5",),
    ),
    (
        "generate: --out in a missing folder",
        lambda d: ["generate", "clas12-ecal-gpt", "--momentum-range", "1:2", "-n", "5", "--out", f"{d}/nodir/o.h5"],
        "does not exist",
        ("nodir",),
    ),
    (
        "generate: --out exists",
        lambda d: ["generate", "clas12-ecal-gpt", "--momentum-range", "1:2", "-n", "5", "--out", write(clas12_events(), d, "o.h5")],
        "already exists",
        (),
    ),
    (
        "generate: pdg 2212 for a photon model",
        lambda d: ["generate", "clas12-ecal-gpt", "--conditions", write(_pdg(2212), d), "--out", f"{d}/o.h5"],
        "conditions/pdg",
        ("o.h5",),
    ),
    (
        "generate: clas12 file relabelled odd-tracker",
        lambda d: ["generate", "odd-tracker-gpt", "--conditions", relabelled(d), "--out", f"{d}/o.h5"],
        "not those of odd-tracker",
        ("o.h5",),
    ),
    (
        "generate: conditions of another detector",
        lambda d: ["generate", "clas12-ecal-gpt", "--conditions", write(odd_conditions(), d), "--out", f"{d}/o.h5"],
        "conditions of detector odd-tracker",
        ("o.h5",),
    ),
    ("info: layer 100", lambda d: ["info", *with_hits(layer=100)(d)], "hits/layer", ()),
    ("info: strip 30000", lambda d: ["info", *with_hits(strip=30000)(d)], "hits/strip", ()),
    ("info: strip -5", lambda d: ["info", *with_hits(strip=-5)(d)], "hits/strip", ()),
    ("info: negative ADC", lambda d: ["info", *with_hits(adc=-3)(d)], "hits/adc", ()),
    ("info: strip beyond its layer", lambda d: ["info", *with_hits(layer=3, strip=50)(d)], "does not have", ()),
    ("info: NaN momentum", lambda d: ["info", write(with_momentum(np.nan), d)], "non-finite", ()),
    ("info: conditions declared (2e9, 3)", lambda d: ["info", forged_size(d)], "GiB", ()),
    ("info: spec renamed foo", lambda d: ["info", relabelled(d, "foo")], "unknown detector 'foo'", ()),
    (
        "info: --plots an existing file",
        lambda d: ["info", write(clas12_events(), d), "--plots", write(clas12_events(), d, "p.h5")],
        "not a folder",
        (),
    ),
    ("info: --plots an existing folder", lambda d: ["info", write(clas12_events(), d), "--plots", _mkdir(d / "plots")], "already exists", ()),
    (
        "evaluate: --out an existing folder",
        lambda d: ["evaluate", write(clas12_events(40), d), write(clas12_events(40, 1), d, "c.h5"), "--out", _mkdir(d / "ev")],
        "already exists",
        (),
    ),
    (
        "evaluate: a candidate with strip 30000",
        lambda d: ["evaluate", write(clas12_events(40), d), *with_hits(strip=30000)(d), "--out", f"{d}/ev"],
        "hits/strip",
        ("ev",),
    ),
    ("train: layer 100", lambda d: ["train", config(TINY)(d), "--data", *with_hits(layer=100)(d), "--out", f"{d}/run"], "hits/layer", ("run",)),
    (
        "train: lr = inf",
        lambda d: ["train", config(TINY + "lr = inf\n")(d), "--data", write(clas12_events(), d), "--out", f"{d}/run"],
        "train.lr",
        ("run",),
    ),
    (
        "train: a folder as config",
        lambda d: ["train", _mkdir(d / "cfg"), "--data", write(clas12_events(), d), "--out", f"{d}/run"],
        "is a folder",
        ("run",),
    ),
    (
        "train: random bytes as config",
        lambda d: ["train", _bytes(d / "c.toml"), "--data", write(clas12_events(), d), "--out", f"{d}/run"],
        "c.toml",
        ("run",),
    ),
    (
        "train: --out an existing file",
        lambda d: ["train", config(TINY)(d), "--data", write(clas12_events(), d), "--out", write(clas12_events(), d, "run")],
        "not a folder",
        (),
    ),
    (
        "train: --stop-after 0",
        lambda d: ["train", config(TINY)(d), "--data", write(clas12_events(), d), "--out", f"{d}/run", "--stop-after", "0"],
        "--stop-after",
        ("run",),
    ),
    (
        "train: --init nope",
        lambda d: ["train", config(TINY)(d), "--data", write(clas12_events(), d), "--out", f"{d}/run", "--init", "nope"],
        "nope",
        ("run",),
    ),
    (
        "train: no architecture",
        lambda d: ["train", config(TINY.replace('architecture = "clas12-gpt"\n', ""))(d), "--data", write(clas12_events(), d), "--out", f"{d}/run"],
        "model.architecture",
        ("run",),
    ),
    (
        "model: config.json a list",
        lambda d: ["generate", tampered_model(lambda c: [c])(d), "--momentum-range", "1:2", "-n", "5", "--out", f"{d}/o.h5"],
        "not an object",
        ("o.h5",),
    ),
    (
        "model: config.json lacks keys",
        lambda d: [
            "generate",
            tampered_model(lambda c: c.pop("detector_spec") and None)(d),
            "--momentum-range",
            "1:2",
            "-n",
            "5",
            "--out",
            f"{d}/o.h5",
        ],
        "lacks detector_spec",
        ("o.h5",),
    ),
    (
        "model: negative momentum scale",
        lambda d: [
            "generate",
            tampered_model(set_key(("model", "momentum_scale_gev"), -3.0))(d),
            "--momentum-range",
            "1:2",
            "-n",
            "5",
            "--out",
            f"{d}/o.h5",
        ],
        "momentum_scale_gev",
        ("o.h5",),
    ),
    (
        "model: another strip dtype",
        lambda d: [
            "generate",
            tampered_model(set_key(("detector_spec", "hit_fields", "strip", "dtype"), "int64"))(d),
            "--momentum-range",
            "1:2",
            "-n",
            "5",
            "--out",
            f"{d}/o.h5",
        ],
        "not those of clas12-ecal",
        ("o.h5",),
    ),
    (
        "ship: invalid metrics.json",
        lambda d: ["ship", str(CLAS12_MODEL), "--name", "m", "--models-dir", _mkdir(d / "models"), "--evaluation", _bad_metrics(d)],
        "metrics.json",
        ("models/m",),
    ),
    (
        "ship: --models-dir a file",
        lambda d: ["ship", str(CLAS12_MODEL), "--name", "m", "--models-dir", write(clas12_events(), d, "models")],
        "not a folder",
        (),
    ),
    (
        "ship: --name escaping its folder",
        lambda d: ["ship", str(CLAS12_MODEL), "--name", "../../escaped", "--models-dir", _mkdir(d / "models")],
        "--name",
        ("escaped", "../escaped"),
    ),
    ("ship: over a shipped model", lambda d: ["ship", str(CLAS12_MODEL), "--name", "m", "--models-dir", _shipped(d)], "already exists", ()),
    ("ship: NaN weights", lambda d: ["ship", _nan_model(d), "--name", "n", "--models-dir", _mkdir(d / "models")], "non-finite", ("models/n",)),
    ("bench: --json in a missing folder", lambda d: ["bench", "clas12-ecal-gpt", "--json", f"{d}/nodir/r.json"], "does not exist", ("nodir",)),
    ("bench: --json exists", lambda d: ["bench", "clas12-ecal-gpt", "--json", _text(d / "r.json")], "already exists", ()),
    (
        "simulate: --momentum-range 1e29:1e30",
        lambda d: ["simulate", "clas12-ecal", "-n", "5", "--momentum-range", "1e29:1e30", "--out", f"{d}/o.h5"],
        "outside what the detector takes",
        ("o.h5",),
    ),
    (
        "simulate: --eta-range 5:10",
        lambda d: ["simulate", "odd-tracker", "-n", "5", "--eta-range", "5:10", "--out", f"{d}/o.h5"],
        "outside what the detector takes",
        ("o.h5",),
    ),
    (
        "simulate: --conditions of another detector",
        lambda d: ["simulate", "clas12-ecal", "--conditions", write(odd_conditions(), d), "--out", f"{d}/o.h5"],
        "conditions of detector odd-tracker",
        ("o.h5",),
    ),
    (
        "simulate: --conditions and a different --events",
        lambda d: ["simulate", "clas12-ecal", "--conditions", write(clas12_events(), d), "-n", "7", "--out", f"{d}/o.h5"],
        "holds 30 events",
        ("o.h5",),
    ),
    (
        "simulate: --conditions with missing columns",
        lambda d: ["simulate", "clas12-ecal", "--conditions", _no_pdg(d), "--out", f"{d}/o.h5"],
        "differ from the detector",
        ("o.h5",),
    ),
    (
        "simulate: --particle proton",
        lambda d: ["simulate", "odd-tracker", "-n", "5", "--particle", "proton", "--out", f"{d}/o.h5"],
        "unknown particle",
        ("o.h5",),
    ),
]


def _pdg(code: int) -> EventSet:
    e = clas12_events()
    e.conditions["pdg"] = np.full(e.n_events, code, np.int32)
    return e


def _no_pdg(d: Path) -> str:
    """A clas12-ecal file without its pdg column."""
    path = Path(write(clas12_events(), d, "nopdg.h5"))
    with h5py.File(path, "a") as f:
        del f["conditions/pdg"]
    return str(path)


def _mkdir(p: Path) -> str:
    p.mkdir()
    return str(p)


def _bytes(p: Path) -> str:
    p.write_bytes(bytes(np.random.default_rng(0).integers(0, 256, 300, dtype=np.uint8)))
    return str(p)


def _text(p: Path) -> str:
    p.write_text("{}")
    return str(p)


def _bad_metrics(d: Path) -> str:
    (d / "ev").mkdir()
    (d / "ev" / "metrics.json").write_text("{not json")
    return str(d / "ev")


def _shipped(d: Path) -> str:
    (d / "models" / "m").mkdir(parents=True)
    (d / "models" / "m" / "config.json").write_text("{}")
    return str(d / "models")


def _nan_model(d: Path) -> str:
    """A copy of the shipped model whose weights hold a NaN (checksum updated, so it loads)."""
    from safetensors.torch import load_file, save_file

    from hitgen.models.io import sha256_of

    folder = d / "nanrun"
    shutil.copytree(CLAS12_MODEL, folder)
    state = load_file(str(folder / "model.safetensors"))
    name = next(k for k, v in state.items() if v.is_floating_point())
    state[name][..., 0] = float("nan")
    save_file(state, str(folder / "model.safetensors"))
    cfg = json.loads((folder / "config.json").read_text())
    cfg["weights_sha256"] = sha256_of(folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps(cfg))
    return str(folder)


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    """hitgen.cli.main in this process: (exit code, stderr); signal handlers restored afterwards."""
    from hitgen.cli import main

    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    old_argv = sys.argv
    sys.argv = ["hitgen", *argv]
    try:
        main()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    finally:
        sys.argv = old_argv
        for s, h in handlers.items():
            signal.signal(s, h)
    return code, capsys.readouterr().err


@pytest.mark.parametrize(("name", "argv", "fragment", "absent"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_gives_one_line_and_leaves_nothing(name, argv, fragment, absent, tmp_path, capsys):
    d = tmp_path / "work"
    d.mkdir()
    args = argv(d)
    before = {p for p in tmp_path.rglob("*")}
    code, err = run_cli(args, capsys)
    lines = err.strip().splitlines()
    assert code != 0, name
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    assert fragment in lines[0], lines[0]
    for rel in absent:
        assert not (d / rel).exists(), f"{name}: {rel} was left behind"
    left = {p for p in tmp_path.rglob("*") if p not in before}
    assert not [p for p in left if ".partial" in p.name or ".replaced" in p.name], left


@pytest.mark.parametrize(("sig", "code", "word"), [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")])
def test_generate_stops_cleanly_on_a_signal_even_started_in_the_background(tmp_path, sig, code, word):
    """A background job starts with SIGINT ignored; generate still stops on it (and on SIGTERM),
    with one line, its exit code, and no output or partial file."""
    import subprocess
    import time

    out = tmp_path / "o.h5"
    cmd = [sys.executable, "-m", "hitgen", "generate", "clas12-ecal-gpt", "--momentum-range", "1:5", "-n", "100000", "--out", str(out)]
    p = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    # wait until it is writing (its handlers are installed by then): a SIGINT sent earlier would be
    # ignored like the background job's, and on a loaded machine the start can take long
    deadline = time.time() + 300
    while time.time() < deadline and p.poll() is None and not any(".partial" in f.name for f in tmp_path.iterdir()):
        time.sleep(0.2)
    assert p.poll() is None and any(".partial" in f.name for f in tmp_path.iterdir()), "generate never started writing"
    p.send_signal(sig)
    _, err = p.communicate(timeout=120)
    assert p.returncode == code, err
    lines = err.strip().splitlines()
    assert lines[-1] == f"error: {word}; no output written" and "Traceback" not in err, err
    assert list(tmp_path.iterdir()) == []
