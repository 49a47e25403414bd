"""The pretrained base of a grown calo-moe folder, alone: its model.safetensors (the same bytes) and its
config without the modules, so that modules can be trained over it afresh (the lead comparisons of
docs/families/calo-moe.md, over the shipped base).

    python docs/families/calo-moe/base_only.py models/ild-ecal-moe OUT
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from hitgen.models.io import load_model

ROUTED = ("experts", "totals", "total_shape", "lora_particles", "lora_experts", "expert_heads")  # the model config's lists of modules


def main(model: str, out: str) -> None:
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=False)
    config = json.loads((Path(model) / "config.json").read_text())
    base_model = config["training"]["model"]  # the base's own experts; modules add to the copy in config["model"]
    config["model"] = config["model"] | {k: base_model.get(k, []) for k in ROUTED}
    config["modules"] = []
    absorbers = {e.split("-")[-1] for e in base_model["experts"]}
    config["detector_specs"] = [s for s in config["detector_specs"] if s["absorber"] in absorbers]
    shutil.copyfile(Path(model) / "model.safetensors", folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    loaded = load_model(str(folder))  # loads (checksum checked) and holds only the base's experts
    print(f"{folder}: experts {list(loaded.model.cfg.experts)}, {sum(p.numel() for p in loaded.model.parameters())} parameters")


if __name__ == "__main__":
    main(*sys.argv[1:3])
