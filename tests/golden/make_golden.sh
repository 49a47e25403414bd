#!/usr/bin/env bash
# Reference events of the shipped models; tests/test_golden.py checks that the code of today draws the
# same events. The odd-tracker files were made with the code before the package was reorganised
# (commit 48ec6fc, whose API the Python part uses); the CLAS12 files with the energy-first model of
# issue #17, made by the two clas12 commands below on the tree that shipped it.
# Run from the repository root with the venv's hitgen on PATH.
set -euo pipefail
cd "$(dirname "$0")"
python - <<'PY'
import numpy as np
from hitgen.detectors import odd_tracker
from hitgen.events import EventSet

# conditions-only odd-tracker file (no hits): the shipped track model's kinematics
cond = odd_tracker.sample_conditions(48, np.random.default_rng([77, 0]), particle="mu+-", pt_range=(70.0, 90.0), eta_range=(0.05, 0.25), phi_range=None)
EventSet("odd-tracker", odd_tracker.INFO.spec(), cond, np.zeros(49, np.int64), {f.name: np.zeros(0, f.np_dtype) for f in odd_tracker.INFO.hit_fields}, "conditions only", seed=77).write("odd_conditions.h5", overwrite=True)
PY
hitgen generate clas12-ecal-gpt --momentum-range 0.5:10 --events 96 --seed 7 --batch-size 32 --out clas12_plain.h5 --overwrite
hitgen generate clas12-ecal-gpt --momentum-range 0.5:10 --events 96 --seed 7 --batch-size 32 --decoder static --out clas12_static.h5 --overwrite
hitgen generate odd-tracker-gpt --conditions odd_conditions.h5 --seed 5 --batch-size 16 --out odd_plain.h5 --overwrite
