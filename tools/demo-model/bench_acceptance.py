"""Speculative decoding on the demo model with held-back text as prompts: a `dsserve serve` per
setting (plain, then EAGLE with each steps x topk), greedy /generate of the held-back windows' first
verse at batch 1 (one request at a time) and batch 32 (32 at once); acceptance length =
completion tokens / verify forwards (meta_info.spec_verify_ct), output tokens per second, and
speed-up against the plain server of the same batch. Prints a markdown table; bench_acceptance.json
in the work folder keeps the numbers."""
import argparse
import concurrent.futures
import json
import os
import time

import bpe_tokenizer as bpe
from check_export import held_back_windows
from dsserve_client import Server


def run(srv, prompts, batch, max_new):
    body = lambda ids: {"input_ids": ids, "sampling_params": {"max_new_tokens": max_new, "temperature": 0}}
    start = time.time()
    if batch == 1:
        outs = [srv.post("/generate", body(p)) for p in prompts]
    else:
        with concurrent.futures.ThreadPoolExecutor(batch) as ex:
            outs = list(ex.map(lambda p: srv.post("/generate", body(p)), prompts))
    wall = time.time() - start
    tokens = sum(o["meta_info"]["completion_tokens"] for o in outs)
    verifies = sum(o["meta_info"]["spec_verify_ct"] for o in outs)
    return {"tokens": tokens, "wall_s": round(wall, 2), "tokens_per_s": round(tokens / wall, 2),
            "accept_length": round(tokens / verifies, 3) if verifies else None,
            "output_ids": [o["output_ids"] for o in outs]}


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--work-dir", required=True)
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--dsserve", required=True)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--settings", default="1x1,2x1,3x1,1x2,2x2,3x2", help="steps x topk, comma-separated")
    a = ap.parse_args()
    tok = bpe.load(a.model_dir)
    windows = held_back_windows(a.work_dir, tok, 128)
    first_verse = []
    for w in windows[:a.prompts]:
        nl = tok.encode("\n")[0]
        first_verse.append(w[:w.index(nl)] if nl in w else w[:24])
    settings = [("plain", [])]
    for s in a.settings.split(","):
        steps, topk = map(int, s.split("x"))
        draft = steps + 1 if topk == 1 else min(8, steps * topk + 1)
        settings.append((f"steps {steps}, topk {topk}, draft tokens {draft}",
                         ["--speculative-algorithm", "EAGLE", "--speculative-num-steps", str(steps),
                          "--speculative-eagle-topk", str(topk), "--speculative-num-draft-tokens", str(draft)]))
    results = []
    base = {}
    for name, flags in settings:
        with Server(a.dsserve, a.model_dir, ["--device", a.device, "--max-running-requests", "64", *flags]) as srv:
            for b in a.batch_size:
                prompts = first_verse[:8] if b == 1 else (first_verse * 8)[:b]
                r = run(srv, prompts, b, a.max_new_tokens)
                if name == "plain":
                    base[b] = r
                same = r["output_ids"] == base[b]["output_ids"]
                row = {"setting": name, "batch": b, "tokens": r["tokens"], "tokens_per_s": r["tokens_per_s"],
                       "accept_length": r["accept_length"],
                       "speed_up": round(r["tokens_per_s"] / base[b]["tokens_per_s"], 2), "same_tokens_as_plain": same}
                results.append(row)
                print(json.dumps(row), flush=True)
    with open(os.path.join(a.work_dir, f"bench_acceptance_{a.device}.json"), "w") as f:
        json.dump(results, f, indent=1)
    print("\n| setting | batch | acceptance length | tokens/s | speed-up | greedy tokens = plain |")
    print("|---|---:|---:|---:|---:|---|")
    for r in results:
        print(f"| {r['setting']} | {r['batch']} | {r['accept_length'] or '-'} | {r['tokens_per_s']} | "
              f"{r['speed_up']}x | {'yes' if r['same_tokens_as_plain'] else 'no'} |")


if __name__ == "__main__":
    main()
