"""How many distinct routed experts a speculative verify touches per MoE layer on this model,
against a decode step: the routing of model.Model (loaded from the exported checkpoint, the same
noaux_tc routing dsserve runs) over held-back text, counted over windows of n consecutive tokens
(a verify of the last token and n - 1 accepted drafts), beside what uniform routing would give,
E * (1 - (1 - k/E)^n), and that formula for DeepSeek-V3's 256 experts, top 8."""
import argparse
import json
import os

import torch

import bpe_tokenizer as bpe
import checkpoint_io as cio
import model as M
from check_export import held_back_windows


def uniform_distinct(E, k, n):
    return E * (1 - (1 - k / E) ** n)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--work-dir", required=True)
    ap.add_argument("--model-dir", required=True)
    a = ap.parse_args()
    torch.set_num_threads(1)
    cfg = json.load(open(os.path.join(a.model_dir, "config.json")))
    model = cio.load_into(M.Model(cfg), a.model_dir).eval()
    tok = bpe.load(a.model_dir)
    routes = {}  # layer name -> [ids [T, k]] per window
    hooks = []
    for name, mod in model.named_modules():
        if isinstance(mod, M.Gate) and not name.startswith("mtp"):
            hooks.append(mod.register_forward_hook(lambda m, i, o, name=name: routes.setdefault(name, []).append(o[0])))
    with torch.no_grad():
        for ids in held_back_windows(a.work_dir, tok, 128):
            model(torch.tensor([ids]))
    E, k = cfg["n_routed_experts"], cfg["num_experts_per_tok"]
    report = {"experts": E, "top_k": k, "layers": {}}
    for name, per_window in routes.items():
        row = {}
        for n in (1, 2, 4, 8):
            counts = [len(torch.unique(w[t:t + n])) for w in per_window for t in range(1, w.shape[0] - n + 1)]
            row[f"tokens_{n}"] = {"measured": round(sum(counts) / len(counts), 2),
                                  "uniform": round(uniform_distinct(E, k, n), 2)}
        load = torch.bincount(torch.cat([w.flatten() for w in per_window]), minlength=E).float()
        row["max_over_mean_load"] = round(float(load.max() / load.mean()), 2)
        report["layers"][name] = row
    report["deepseek_v3_uniform"] = {f"tokens_{n}": round(uniform_distinct(256, 8, n), 2) for n in (1, 2, 4, 8)}
    print(json.dumps(report, indent=1))
    with open(os.path.join(a.work_dir, "expert_reuse.json"), "w") as f:
        json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
