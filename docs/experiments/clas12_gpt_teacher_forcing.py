"""Teacher-forced or free-running? The shipped CLAS12 GPT's energy response and resolution when
every hit's ADC is drawn given the TRUE prefix of the Geant4 event (its true hits, strips and the
true ADC/TDC of the earlier hits), against Geant4 and against free generation.

    python docs/experiments/clas12_gpt_teacher_forcing.py ../shared/data/clas12-ecal/select5k_seed3001.h5

Prints, per |p| bin: Geant4's mean total ADC / |p| and relative resolution; the same for the
teacher-forced expectation (each hit's expected ADC summed) and for teacher-forced draws (each hit's
ADC drawn from its distribution, one draw per hit, then summed).
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from hitgen.detectors import read_events
from hitgen.families.clas12_gpt import tokenizer as tok
from hitgen.families.clas12_gpt.data import TokenData
from hitgen.models.io import load_model


@torch.no_grad()
def main(path: str, batch: int = 250) -> None:
    model = load_model("clas12-ecal-gpt").model.eval()
    events = read_events(path)
    data = TokenData.from_events(events)
    values = torch.as_tensor(tok.ADC_BINNING.decode(np.arange(tok.N_ADC)), dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    expected, drawn = np.zeros(events.n_events), np.zeros(events.n_events)
    for lo in range(0, events.n_events, batch):
        idx = np.arange(lo, min(lo + batch, events.n_events))
        b = data.batch(idx)
        inputs = {k: b[k][:, :-1] for k in ("strip", "adc", "tdc", "layer", "rank")}
        h = model(b["momentum"], **inputs)
        t_strip = b["strip"][:, 1:]
        is_hit = t_strip < tok.N_STRIPS
        event = torch.arange(len(idx))[:, None].expand_as(t_strip)[is_hit]
        hv = h[is_hit]
        strip_logp = model.strip_log_probs(hv)
        p = torch.exp(model.adc_log_probs(model.value_hidden(hv, t_strip[is_hit].long()), strip_logp)[:, : tok.N_ADC]).double()
        p = p / p.sum(1, keepdim=True)
        e_adc = p @ values
        d_adc = values[torch.multinomial(p.float(), 1, generator=gen).squeeze(1)]
        expected[idx] = torch.zeros(len(idx), dtype=torch.float64).index_add_(0, event, e_adc).numpy()
        drawn[idx] = torch.zeros(len(idx), dtype=torch.float64).index_add_(0, event, d_adc).numpy()
    p_abs = np.linalg.norm(events.conditions["momentum"].astype(np.float64), axis=1)
    true = np.bincount(events.event_index(), events.hits["adc"].astype(np.float64), minlength=events.n_events)
    edges = np.linspace(0.5, 10.0, 11)
    which = np.clip(np.digitize(p_abs, edges) - 1, 0, 9)
    print("|p| GeV   n    Geant4 ADC/|p|  res   | TF expected  ratio | TF drawn  ratio  res   res ratio")
    for k in range(10):
        m = which == k
        g, e, d = true[m] / p_abs[m], expected[m] / p_abs[m], drawn[m] / p_abs[m]
        print(
            f"{edges[k]:.2f}-{edges[k + 1]:.2f} {m.sum():4d}  {g.mean():9.0f}  {g.std() / g.mean():.4f} | {e.mean():9.0f} {e.mean() / g.mean():.4f} |"
            f" {d.mean():8.0f} {d.mean() / g.mean():.4f} {d.std() / d.mean():.4f} {d.std() / d.mean() / (g.std() / g.mean()):.3f}"
        )


if __name__ == "__main__":
    main(sys.argv[1])
