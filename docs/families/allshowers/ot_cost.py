"""The time of one training step (64 showers, forward and backward) with and without the OT pairing,
on the same batches:  python docs/families/allshowers/ot_cost.py [DATA_DIR]"""

import sys
import time

import numpy as np
import torch

from hitgen.core.events import EventSet
from hitgen.families import get_family
from hitgen.families.allshowers.loss import flow_matching_loss
from hitgen.models.io import load_model

torch.set_num_threads(2)
m = load_model("ild-ecal-allshowers").model.train()
d = (sys.argv[1] if len(sys.argv) > 1 else "/work/runs/allshowers/data") + "/"
ev = EventSet.concatenate([EventSet.read(d + f) for f in ("train_gamma_seed5001.h5", "train_e-_seed5002.h5", "train_mu-_seed5004.h5")])
data = get_family("allshowers").training_data(ev)
rng = np.random.default_rng(0)
res = {True: [], False: []}
for rep in range(6):
    idx = np.sort(rng.choice(len(data), 64, replace=False))
    batch = data.batch(idx)
    for ot in (True, False):
        m.cfg.ot_pairing = ot
        t = time.perf_counter()
        loss, _ = flow_matching_loss(m, batch)
        loss.backward()
        m.zero_grad()
        res[ot].append(time.perf_counter() - t)
print({("OT" if k else "no OT"): f"{np.median(v):.3f} s (median of {len(v)})" for k, v in res.items()})
