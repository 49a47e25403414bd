"""The curve of fidelity against function evaluations (photons, from nfe_curve.sh folders), beside
the generation speed of each run (2000 showers at batch 256; the evaluations ran one at a time):

    python docs/families/allshowers/nfe_table.py DATA_DIR NAME=FOLDER [NAME=FOLDER ...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from summary import max_dev, profiles  # noqa: E402

from hitgen.core.events import EventSet  # noqa: E402


def main(data: Path, runs: list[str]) -> None:
    ref = profiles(EventSet.read(data / "eval_gamma_seed6001.h5"))
    print("| model | decoder | response, largest \\|ratio-1\\| | resolution, largest \\|ratio-1\\| | AUC high / low level "
          "| longitudinal, radial largest \\|ratio-1\\| | hits W1 | showers/s |")
    print("|---|---|---|---|---|---|---|---|")
    for run in runs:
        name, folder = run.split("=")
        for d in sorted(Path(folder).glob("eval_gamma_*"), key=lambda p: (p.name.rsplit("-", 1)[0], int(p.name.rsplit("-", 1)[1]))):
            dec = d.name.removeprefix("eval_gamma_")
            m = json.loads((d / "metrics.json").read_text())
            cand = profiles(EventSet.read(Path(folder) / f"gen_gamma_{dec}.h5"))
            timing = (m.get("candidate") or {}).get("timing") or {}
            speed = f"{timing['events_per_s']:.0f}" if timing else "-"
            print(f"| {name} | {dec} | {m['response_max_dev']:.3f} | {m['resolution_max_dev']:.2f} | {m['classifier_auc']:.3f} / "
                  f"{m['classifier_auc_low_level']:.3f} | {max_dev(ref[0], cand[0]):.2f}, {max_dev(ref[1], cand[1]):.2f} | "
                  f"{m['hits_per_event_w1']:.1f} | {speed} |")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])
