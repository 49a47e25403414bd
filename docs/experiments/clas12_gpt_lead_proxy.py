"""Resolution and response of the drawn total (the lead alone, start_tokens) against Geant4, per |p| bin.
Usage: python docs/experiments/clas12_gpt_lead_proxy.py EVAL.h5 MODEL (a model folder, a run folder or a shipped name)."""
import sys, numpy as np, torch
from hitgen.core.events import EventSet
from hitgen.models import io
from hitgen.families import SamplingOptions
from hitgen.families.clas12_gpt import tokenizer as tok
from hitgen.families.clas12_gpt.sampler import Budget, start_tokens
from hitgen.nn import streams
from hitgen.nn.blocks import new_cache
torch.set_num_threads(2)
ref = EventSet.read(sys.argv[1])
if sys.argv[2].endswith(".safetensors"):  # a run's checkpoint: the lead's weights into the shipped model with a lead
    import json, dataclasses
    from safetensors.torch import load_file
    from hitgen.families.clas12_gpt.model import GPTConfig, HitGPT
    base = io.load_model("clas12-ecal-gpt")
    cfg = dataclasses.replace(base.model.cfg, energy_lead="mlp")
    model = HitGPT(cfg).eval()
    model.load_state_dict({k: v for k, v in base.model.state_dict().items() if not k.startswith("head_energy")}, strict=False)
    w = load_file(sys.argv[2]); model.lead.load_state_dict({k[len("model.lead."):]: v for k, v in w.items() if k.startswith("model.lead.")})
else:
    model = io.load_model(sys.argv[2]).model.eval()
mom = ref.conditions["momentum"]; p = np.linalg.norm(mom, axis=1)
g4 = tok.layer_sums(ref.offsets, ref.hits["layer"], ref.hits["adc"]).sum(1)
out = []
with torch.no_grad():
    for lo in range(0, len(mom), 2048):
        m = torch.as_tensor(mom[lo:lo+2048]); b = Budget(model, m)
        keys = torch.as_tensor(streams.event_keys(1, np.arange(lo, lo+len(m))))
        _, _, _, adc = start_tokens(model, m, keys, SamplingOptions(seed=1), new_cache(model), b)
        out.append(adc.sum(1).numpy())
tot = np.concatenate(out)
edges = np.linspace(0.5, 10, 11); rr, rs = [], []
for a, c in zip(edges[:-1], edges[1:]):
    s = (p >= a) & (p < c)
    x, y = g4[s] / p[s], tot[s] / p[s]
    rr.append(y.mean() / x.mean()); rs.append((y.std() / y.mean()) / (x.std() / x.mean()))
print("response ratio", np.round(rr, 4)); print("resolution ratio", np.round(rs, 3)); print("max |res-1|", np.abs(np.array(rs) - 1).max().round(3))
