"""Showers of an AllShowers model without the scaling of the points to the first stage's layer
energies (the points keep the CNF's own energies): the "without" side of issue 20's comparison.

    python docs/families/allshowers/without_layer_energies.py MODEL CONDITIONS.h5 OUT.h5 [DECODER]
"""

from __future__ import annotations

import sys

from hitgen.core.events import EventSet
from hitgen.families.allshowers.sampler import generate_showers
from hitgen.models.io import load_model

if __name__ == "__main__":
    model_ref, conditions, out = sys.argv[1:4]
    decoder = sys.argv[4] if len(sys.argv) > 4 else "plain"
    loaded = load_model(model_ref)
    ref = EventSet.read(conditions)
    offsets, hits = generate_showers(loaded.model, ref.conditions, seed=1, batch_size=256, decoder=decoder, rescale=False)
    spec = loaded.config["detector_spec"]
    EventSet(spec["name"], spec, ref.conditions, offsets, hits, loaded.producer + ", without layer-energy scaling", seed=1).write(out, overwrite=True)
    print(f"{ref.n_events} events, {len(hits['energy'])} hits -> {out}")
