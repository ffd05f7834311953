"""Step 4 of the demo model: checks of the export against the training framework. dsserve's
tokenizer gives the ids of the Python encoder; dsserve's logprobs on held-back text (`/generate`
with input logprobs and the top 5) against model.Model loaded from the exported checkpoint
(FP8 dequantized as the CPU oracle does) and against the trained float32 weights; perplexity on the
held-back part computed both ways (must agree within 1%). Writes check_export.json in the work
folder and prints the summary."""
import argparse
import json
import math
import os
import subprocess

import torch

import bpe_tokenizer as bpe
import checkpoint_io as cio
import model as M
from dsserve_client import Server


def held_back_windows(work_dir, tok, max_tokens):
    """[ids]: BOS + whole held-back verses, as many as fit in max_tokens."""
    windows = []
    for ch in json.load(open(os.path.join(work_dir, "held_back.json"))):
        cur = [tok.id_of[bpe.BOS]]
        for i, verse in enumerate(ch["text"].split("\n")):
            ids = tok.encode(("\n" if len(cur) > 1 else "") + verse)
            if len(cur) + len(ids) > max_tokens and len(cur) > 1:
                windows.append(cur)
                cur = [tok.id_of[bpe.BOS]] + tok.encode(verse)
            else:
                cur += ids
        if len(cur) > 1:
            windows.append(cur)
    return windows


@torch.no_grad()
def framework_logprobs(model, ids):
    logits, _ = model(torch.tensor([ids]))
    return torch.log_softmax(logits[0].double(), -1)  # [T, V]: row t predicts ids[t+1]


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--work-dir", required=True)
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--dsserve", required=True)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--window", type=int, default=128)
    ap.add_argument("--serve-args", default="", help="more `dsserve serve` flags, e.g. --kv-cache-dtype fp8_e4m3")
    a = ap.parse_args()
    torch.set_num_threads(1)
    tok = bpe.load(a.model_dir)
    windows = held_back_windows(a.work_dir, tok, a.window)

    # 1. tokenizer agreement on the held-back text (dsserve adds BOS: add_bos_token is true)
    texts = [tok.decode(w[1:]) for w in windows]
    out = subprocess.run([a.dsserve, "tokenize", "--tokenizer-path", a.model_dir], input="\n".join(json.dumps(t) for t in texts),
                         capture_output=True, text=True, check=True).stdout.splitlines()
    mismatched = sum(1 for w, line in zip(windows, out) if json.loads(line)[-len(w) + 1:] != w[1:])

    # 2. the framework on the exported weights and on the trained float32 weights
    cfg = json.load(open(os.path.join(a.model_dir, "config.json")))
    exported = cio.load_into(M.Model(cfg), a.model_dir).eval()
    trained = M.Model(cfg)
    trained.load_state_dict(torch.load(os.path.join(a.work_dir, "checkpoint.pt"))["state"])
    trained.eval()

    diffs, top_diffs, top1_agree, positions = [], [], 0, 0
    nll = {"dsserve": 0.0, "framework_export": 0.0, "framework_trained": 0.0}
    with Server(a.dsserve, a.model_dir, ["--device", a.device, *a.serve_args.split()]) as srv:
        for ids in windows:
            r = srv.post("/generate", {"input_ids": ids, "sampling_params": {"max_new_tokens": 1, "temperature": 0},
                                       "return_logprob": True, "logprob_start_len": 0, "top_logprobs_num": 5})
            got = r["meta_info"]["input_token_logprobs"]  # [[logprob, id, text], ...]; the first is null
            got_top = r["meta_info"]["input_top_logprobs"]
            ref = framework_logprobs(exported, ids)
            ref_trained = framework_logprobs(trained, ids)
            for t in range(1, len(ids)):
                lp = float(got[t][0])
                fw = float(ref[t - 1, ids[t]])
                diffs.append(abs(lp - fw))
                nll["dsserve"] -= lp
                nll["framework_export"] -= fw
                nll["framework_trained"] -= float(ref_trained[t - 1, ids[t]])
                top = got_top[t]
                for e in top:
                    top_diffs.append(abs(float(e[0]) - float(ref[t - 1, int(e[1])])))
                top1_agree += int(top[0][1]) == int(ref[t - 1].argmax())
                positions += 1
    ppl = {k: math.exp(v / positions) for k, v in nll.items()}
    diffs.sort()
    top_diffs.sort()
    report = {
        "device": a.device, "serve_args": a.serve_args, "windows": len(windows), "positions": positions,
        "tokenizer_mismatched_windows": mismatched,
        "token_logprob_abs_diff": {"max": diffs[-1], "median": diffs[len(diffs) // 2], "mean": sum(diffs) / len(diffs)},
        "top5_logprob_abs_diff": {"max": top_diffs[-1], "median": top_diffs[len(top_diffs) // 2]},
        "top1_agreement": top1_agree / positions,
        "perplexity": ppl,
        "perplexity_rel_diff_dsserve_vs_framework": abs(ppl["dsserve"] / ppl["framework_export"] - 1),
    }
    with open(os.path.join(a.work_dir, f"check_export_{a.device}.json"), "w") as f:
        json.dump(report, f, indent=1)
    print(json.dumps(report, indent=1))
    ok = mismatched == 0 and report["perplexity_rel_diff_dsserve_vs_framework"] < 0.01
    print("check_export:", "ok" if ok else "FAILED")
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
