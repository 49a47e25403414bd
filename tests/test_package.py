"""hitgen as a wheel: the shipped models and every report template travel with the package, and a
shipped model loads by name where no source checkout is in sight."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_a_wheel_carries_the_shipped_models_and_loads_them_by_name(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path / "dist"), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr
    (wheel,) = (tmp_path / "dist").glob("hitgen-*.whl")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        z.extractall(site)
    for model in sorted(p.name for p in (ROOT / "models").iterdir() if (p / "config.json").is_file()):
        for f in ("config.json", "model.safetensors", "README.md", "metrics.json"):
            assert f"hitgen/shipped/{model}/{f}" in names, (model, f)
    templates = {f"hitgen/detectors/{d}/report.html.j2" for d in ("clas12_ecal", "odd_tracker")} | {"hitgen/models/templates/model_card.md.j2"}
    assert templates <= names
    code = "from hitgen.models.io import load_model; m = load_model('odd-tracker-gpt'); print(m.path.resolve())"
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert Path(out.stdout.strip()).is_relative_to(site.resolve()), out.stdout
