"""The cost of a generated token with 2 and with 6 experts held: only the routed expert runs, so the
time per token must not grow with the experts a model holds. Beside it, the way the paper's code
routes (every expert runs, the others' outputs masked) for contrast.

    python docs/families/calo-moe/cost_per_token.py MODEL [--batch 256 --positions 160 --repeats 5]

Times one decoding pass of `positions` tokens over a key-value cache for a batch of photon showers
in tungsten (the trunk and the heads' first draw; the draws themselves are the same in all three)."""

from __future__ import annotations

import argparse
import json
import time

import torch

from hitgen.families.calo_moe.model import CaloMoE
from hitgen.models.io import load_model
from hitgen.nn.blocks import KVCache


def decode_time(model: CaloMoE, batch: int, positions: int, route) -> float:
    cond = torch.zeros(batch, 5)
    tok = torch.zeros(batch, 1, dtype=torch.long)
    experts = ["gamma-W"] * batch
    with torch.no_grad():
        cache = KVCache(len(model.blocks))
        t0 = time.perf_counter()
        h = model.trunk(model.prefix(cond, experts), 0, route, cache)
        for p in range(1, positions):
            h = model.trunk(model.embed(tok, tok, tok, tok), p, route, cache)
            model.heads["gamma"].layer(h[:, -1])
        return (time.perf_counter() - t0) / (batch * positions)


def masked_route(model: CaloMoE, routed: str):
    """Every expert runs on every row; the routed one's output is kept (the paper's implementation)."""

    def route(h, i):
        outs = {k: e.ffn[i](h) for k, e in model.experts.items()}
        return outs[routed]

    route.adapters = None
    return route


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--positions", type=int, default=160)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    model = load_model(a.model).model
    base = {**model.cfg.to_dict(), "experts": ["gamma-W", "gamma-Ta"], "lora_particles": []}  # experts only: no adapter
    held2 = CaloMoE(model.cfg.__class__.from_dict(base)).eval()
    held2.load_state_dict({k: v for k, v in model.state_dict().items() if k in held2.state_dict()})
    held6 = CaloMoE(model.cfg.__class__.from_dict(base)).eval()
    for key in ("gamma-Pb", "e--W", "e--Ta", "e--Pb"):
        held6.add_expert(key)
    held6.load_state_dict({**held6.state_dict(), **{k: v for k, v in model.state_dict().items() if k in held6.state_dict()}})
    held6.eval()
    cases = {
        "2 experts held, routed": (held2, held2.router(["gamma-W"] * a.batch)),
        "6 experts held, routed": (held6, held6.router(["gamma-W"] * a.batch)),
        "6 experts held, all run and masked": (held6, masked_route(held6, "gamma-W")),
    }
    times = {name: [] for name in cases}
    for _ in range(a.repeats):  # interleaved, so that drifts of the machine touch every case alike
        for name, (m, route) in cases.items():
            times[name].append(decode_time(m, a.batch, a.positions, route))
    out = {}
    for name, t in times.items():
        t = torch.tensor(t[1:] if len(t) > 1 else t)  # the first pass warms up
        out[name] = {"us_per_token": float(t.mean() * 1e6), "spread_us": float(t.std() * 1e6) if len(t) > 1 else 0.0}
        print(f"{name:40s} {out[name]['us_per_token']:8.2f} +- {out[name]['spread_us']:.2f} us per token")
    print(json.dumps({"threads": torch.get_num_threads(), "batch": a.batch, "positions": a.positions, **out}))


if __name__ == "__main__":
    main()
