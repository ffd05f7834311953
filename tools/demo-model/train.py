"""Step 2 of the demo model: trains model.Model on the prepared pools with DeepSeek-V3's objective
(next-token loss plus lambda/D times the MTP depths' losses, auxiliary-loss-free balancing by
e_score_correction_bias with a small sequence-wise balance loss), on CUDA when present (bf16
autocast) and on the CPU otherwise. Fixed seeds; logs loss and MTP loss; saves a checkpoint and
greedy completions every --eval-every steps. With --time-budget-s the cosine schedule runs on
max(step / steps, elapsed / budget), so a slow CPU still ends the schedule in time."""
import argparse
import contextlib
import json
import math
import os
import random
import time

import torch
import torch.nn.functional as F

import bpe_tokenizer as bpe
import model as M

PROMPTS = ["In the beginning God created", "The LORD is my shepherd;", "For God so loved the world,",
           f"{bpe.USER}Recite John 3:16.{bpe.ASSISTANT}", f"{bpe.USER}Recite Psalm 23:1.{bpe.ASSISTANT}"]


def demo_config(vocab_size):
    """The shipped model's config.json fields (FP8 linears: every in-dimension a multiple of 128)."""
    return {
        "architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3", "vocab_size": vocab_size,
        "hidden_size": 256, "intermediate_size": 768, "moe_intermediate_size": 128, "num_hidden_layers": 3,
        "num_nextn_predict_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 4, "q_lora_rank": 128,
        "kv_lora_rank": 128, "qk_nope_head_dim": 64, "qk_rope_head_dim": 32, "v_head_dim": 64,
        "n_routed_experts": 16, "n_shared_experts": 1, "num_experts_per_tok": 4, "n_group": 4, "topk_group": 2,
        "first_k_dense_replace": 1, "moe_layer_freq": 1, "norm_topk_prob": True, "routed_scaling_factor": 2.5,
        "scoring_func": "sigmoid", "topk_method": "noaux_tc", "hidden_act": "silu", "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0, "rope_scaling": None, "max_position_embeddings": 4096, "tie_word_embeddings": False,
        "bos_token_id": 0, "eos_token_id": 1, "torch_dtype": "bfloat16", "attention_bias": False, "use_cache": True,
    }


class Sampler:
    """Training rows: documents drawn from the pools by weight, packed from a document start."""

    def __init__(self, data, weights, seq_len, seed):
        self.pools = [(data[k], w) for k, w in weights.items()]
        self.seq_len = seq_len
        self.rng = random.Random(seed)
        self.pad = data["eos"]

    def row(self):
        out = []
        while len(out) < self.seq_len + 1:
            docs = self.rng.choices([p for p, _ in self.pools], weights=[w for _, w in self.pools])[0]
            out += self.rng.choice(docs)
        return out[:self.seq_len + 1]

    def batch(self, n):
        return torch.tensor([self.row() for _ in range(n)], dtype=torch.long)


def losses(model, ids, depths):
    logits, mtp = model(ids[:, :-1], depths)
    V = logits.shape[-1]
    main = F.cross_entropy(logits.float().reshape(-1, V), ids[:, 1:].reshape(-1))
    # depth k's row j predicts token j+2 of the input; the last row of each has no label
    mtp_losses = []
    for k, lg in enumerate(mtp, start=1):
        valid = lg[:, k - 1:-1]
        mtp_losses.append(F.cross_entropy(valid.float().reshape(-1, V), ids[:, k + 1:].reshape(-1)))
    return main, mtp_losses


@torch.no_grad()
def greedy(model, tok, prompt, n, device):
    ids = [tok.id_of[bpe.BOS]] + tok.encode(prompt)
    for _ in range(n):
        logits, _ = model(torch.tensor([ids], device=device))
        nxt = int(logits[0, -1].argmax())
        if nxt == tok.id_of[bpe.EOS]:
            break
        ids.append(nxt)
    return tok.decode(ids[1 + len(tok.encode(prompt)):])


def autocast(device):
    """bf16 autocast on CUDA; nothing on the CPU (float32 there)."""
    if device == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--work-dir", required=True)
    ap.add_argument("--model-dir", required=True, help="holds tokenizer.json (from prepare.py)")
    ap.add_argument("--steps", type=int, default=900)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--mtp-depths", type=int, default=3)
    ap.add_argument("--mtp-lambda", type=float, default=0.3)
    ap.add_argument("--bias-update", type=float, default=1e-3, help="gamma of the auxiliary-loss-free balancing")
    ap.add_argument("--balance-alpha", type=float, default=1e-4)
    ap.add_argument("--time-budget-s", type=float, default=0)
    ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (one: a shared machine stalls OpenMP barriers)")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--pools", default="plain=0.55,famous=0.1,chat=0.35", help="pool weights of the training rows")
    ap.add_argument("--init-from", help="a checkpoint.pt whose weights (routing biases included) the run starts from")
    a = ap.parse_args()

    torch.manual_seed(a.seed)
    random.seed(a.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        torch.set_num_threads(a.threads)
    data = torch.load(os.path.join(a.work_dir, "data.pt"))
    tok = bpe.load(a.model_dir)
    cfg = demo_config(data["vocab_size"])
    model = M.Model(cfg)
    if a.init_from:
        model.load_state_dict(torch.load(a.init_from)["state"])
    model = model.to(device)
    decay = [p for n, p in model.named_parameters() if p.dim() > 1]
    no_decay = [p for n, p in model.named_parameters() if p.dim() <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.95))
    pools = {k: float(w) for k, w in (kv.split("=") for kv in a.pools.split(","))}
    sampler = Sampler(data, pools, a.seq_len, a.seed)
    log = open(os.path.join(a.work_dir, "train_log.jsonl"), "a")
    start = time.time()
    step, progress = 0, 0.0
    while step < a.steps and progress < 1.0:
        progress = step / a.steps
        if a.time_budget_s:
            progress = max(progress, (time.time() - start) / a.time_budget_s)
        lr = a.lr * min(1.0, (step + 1) / a.warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))
        for g in opt.param_groups:
            g["lr"] = lr
        ids = sampler.batch(a.batch).to(device)
        with autocast(device):
            main_loss, mtp_losses = losses(model, ids, a.mtp_depths)
            mtp_loss = sum(mtp_losses) / len(mtp_losses)
            balance = sum(m.last_balance_loss for m in model.moe_layers())
            loss = main_loss + a.mtp_lambda * mtp_loss + a.balance_alpha * balance
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0))
        opt.step()
        with torch.no_grad():  # auxiliary-loss-free balancing: raise the bias of underloaded experts
            for m in model.moe_layers():
                load = m.last_load.float()
                m.gate.e_score_correction_bias += a.bias_update * torch.sign(load.mean() - load)
        step += 1
        rec = {"step": step, "loss": round(float(main_loss), 4), "mtp_loss": [round(float(x), 4) for x in mtp_losses],
               "lr": round(lr, 6), "grad_norm": round(gnorm, 3), "elapsed_s": round(time.time() - start, 1)}
        log.write(json.dumps(rec) + "\n")
        log.flush()
        print(json.dumps(rec), flush=True)
        if step % a.eval_every == 0 or step == a.steps:
            save(model, cfg, a, step)
            model.eval()
            for p in PROMPTS:
                print(f"  {p!r} -> {greedy(model, tok, p, 16, device)!r}", flush=True)
            model.train()
    save(model, cfg, a, step)
    print(f"finished after {step} steps, {time.time() - start:.0f} s", flush=True)


def save(model, cfg, a, step):
    path = os.path.join(a.work_dir, "checkpoint.pt")
    torch.save({"config": cfg, "step": step, "state": model.state_dict()}, path + ".tmp")
    os.replace(path + ".tmp", path)


if __name__ == "__main__":
    main()
