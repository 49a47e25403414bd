"""Does one factor MLP learn the total's density (given p) precisely? Trains the lead's total factor alone and prints
response and resolution ratios per |p| bin against eval20k. Usage: python ... N_FILES LR STEPS (measured: 4 1e-3 1200)."""
import sys, time, numpy as np, torch
from hitgen.core.events import EventSet
from hitgen.families.clas12_gpt import tokenizer as tok
from hitgen.families.clas12_gpt.lead import EnergyLead
from hitgen.nn.draw import sample_values
torch.set_num_threads(1); torch.manual_seed(0)
D = "../shared/data/clas12-ecal/"  # run from the repository root
mom, tot = [], []
for s in range(1001, 1001 + int(sys.argv[1])):
    e = EventSet.read(D + f"train30k_seed{s}.h5"); mom.append(e.conditions["momentum"]); tot.append(tok.encode_total(tok.layer_sums(e.offsets, e.hits["layer"], e.hits["adc"]), e.conditions["momentum"]))
mom = torch.as_tensor(np.concatenate(mom)); tot = torch.as_tensor(np.concatenate(tot).astype(np.int64))
ref = EventSet.read(D + "eval20k_seed2001.h5"); rm = torch.as_tensor(ref.conditions["momentum"]); p = rm.norm(dim=1).numpy()
g4 = tok.layer_sums(ref.offsets, ref.hits["layer"], ref.hits["adc"]).sum(1) / (p * tok.ADC_PER_GEV)
lead = EnergyLead(256, 3, 8, 3.0); lr = float(sys.argv[2]); steps = int(sys.argv[3])
opt = torch.optim.AdamW(lead.parameters(), lr=lr, betas=(0.9, 0.95))
none = torch.full((4096, 9), tok.ENERGY_ZERO)
def res():
    with torch.no_grad():
        out = []
        for lo in range(0, len(rm), 4096):
            m = rm[lo:lo+4096]; lp = lead.log_probs(m, torch.zeros(len(m), dtype=torch.long), none[:len(m)], 0)
            t = sample_values(lp, 1.0, 0, torch.rand(len(m)))
            out.append(tok.TOTAL_BINNING.at(t.double().numpy(), np.random.rand(len(m))))
    y = np.concatenate(out); e = np.linspace(0.5, 10, 11); rr, rs = [], []
    for a, c in zip(e[:-1], e[1:]):
        s = (p >= a) & (p < c); rr.append(y[s].mean() / g4[s].mean()); rs.append((y[s].std() / y[s].mean()) / (g4[s].std() / g4[s].mean()))
    return np.round(rr, 3), np.round(rs, 3)
t0 = time.time()
for step in range(steps):
    g = step / steps; cur = lr * min(1, (step + 1) / 100) * (0.02 + 0.98 * 0.5 * (1 + np.cos(np.pi * g)))
    for gr in opt.param_groups: gr["lr"] = cur
    idx = torch.randint(0, len(tot), (4096,))
    x = lead.inputs(mom[idx], tot[idx], none, torch.zeros(4096, dtype=torch.long))
    loss = -lead.head.log_prob(lead.mlp.one(x, 0), tot[idx]).mean()
    opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(lead.parameters(), 1.0); opt.step()
    if (step + 1) % (steps // 4) == 0:
        print(step + 1, round(loss.item(), 3), *res(), round(time.time() - t0), flush=True)
