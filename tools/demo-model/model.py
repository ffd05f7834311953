"""DeepSeek-V3 in PyTorch for training the demo model: MLA (q/kv LoRA ranks, decoupled RoPE on
interleaved pairs), DeepSeekMoE (sigmoid scores, e_score_correction_bias, group-limited top-k, a
shared expert), the first layers dense, and one MTP module applied at depths 1..D with DeepSeek-V3's
MTP loss. Parameter names are the checkpoint's. The MTP module's attention at depth k sees the
depth-1 rows up to where its chain began and the chain's own rows, as EAGLE drafting does when the
module is run k times in a row."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight.float()).to(x.dtype)


def linear(i, o):
    return nn.Linear(i, o, bias=False)


def rope_tables(dim, positions, theta):
    inv = 1.0 / theta ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim)
    ang = torch.arange(positions, dtype=torch.float64)[:, None] * inv[None, :]
    return torch.cos(ang).float(), torch.sin(ang).float()  # [P, dim/2]


def apply_rope(x, cos, sin):
    """x [..., T, d]: rotates the pairs (2i, 2i+1) by position * inv_freq[i]."""
    a, b = x[..., 0::2], x[..., 1::2]
    return torch.stack((a * cos - b * sin, a * sin + b * cos), dim=-1).flatten(-2)


class Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.nh, self.dn, self.dr, self.dv = c["num_attention_heads"], c["qk_nope_head_dim"], c["qk_rope_head_dim"], c["v_head_dim"]
        H, qr, kr = c["hidden_size"], c["q_lora_rank"], c["kv_lora_rank"]
        self.q_a_proj = linear(H, qr)
        self.q_a_layernorm = RMSNorm(qr, c["rms_norm_eps"])
        self.q_b_proj = linear(qr, self.nh * (self.dn + self.dr))
        self.kv_a_proj_with_mqa = linear(H, kr + self.dr)
        self.kv_a_layernorm = RMSNorm(kr, c["rms_norm_eps"])
        self.kv_b_proj = linear(kr, self.nh * (self.dn + self.dv))
        self.o_proj = linear(self.nh * self.dv, H)
        self.scale = 1.0 / math.sqrt(self.dn + self.dr)

    def qkv(self, x, cos, sin):
        """x [B, T, H] -> q [B, n, T, dn+dr], k [B, n, T, dn+dr], v [B, n, T, dv]."""
        B, T, _ = x.shape
        q = self.q_b_proj(self.q_a_layernorm(self.q_a_proj(x))).view(B, T, self.nh, self.dn + self.dr).transpose(1, 2)
        q = torch.cat((q[..., :self.dn], apply_rope(q[..., self.dn:], cos, sin)), -1)
        kv_a = self.kv_a_proj_with_mqa(x)
        c_kv = self.kv_a_layernorm(kv_a[..., :-self.dr])
        k_pe = apply_rope(kv_a[..., -self.dr:].unsqueeze(1), cos, sin)  # [B, 1, T, dr]
        kv = self.kv_b_proj(c_kv).view(B, T, self.nh, self.dn + self.dv).transpose(1, 2)
        k = torch.cat((kv[..., :self.dn], k_pe.expand(B, self.nh, T, self.dr)), -1)
        return q, k, kv[..., self.dn:]

    def forward(self, x, cos, sin, lag=0, chain=()):
        """Causal attention; with lag > 0 (MTP depth lag + 1) the query at j sees this call's keys up
        to j - lag (the depth-1 rows, given in `chain[0]`'s place by the caller) and, for each
        (k, v, shift) in chain, the one key at j - shift. Returns (output, (k, v))."""
        q, k, v = self.qkv(x, cos, sin)
        B, n, T, _ = q.shape
        if lag == 0:
            mask = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
            s = (q @ k.transpose(-1, -2)) * self.scale
            o = torch.softmax(s.masked_fill(~mask, float("-inf")).float(), -1).to(q.dtype) @ v
        else:
            base_k, base_v = chain[0]
            mask = torch.ones(T, T, dtype=torch.bool, device=x.device).tril(-lag)
            s_base = ((q @ base_k.transpose(-1, -2)) * self.scale).masked_fill(~mask, float("-inf"))
            extra_k = [shift_rows(ck, sh) for ck, _, sh in chain[1:]] + [k]
            extra_v = [shift_rows(cv, sh) for _, cv, sh in chain[1:]] + [v]
            s_extra = torch.stack([(q * ek).sum(-1) * self.scale for ek in extra_k], -1)  # [B, n, T, m]
            p = torch.softmax(torch.cat((s_base, s_extra), -1).float(), -1).to(q.dtype)
            o = p[..., :T] @ base_v
            for i, ev in enumerate(extra_v):
                o = o + p[..., T + i:T + i + 1] * ev
        o = o.transpose(1, 2).reshape(B, T, n * self.dv)
        return self.o_proj(o), (k, v)


def shift_rows(t, shift):
    """t [B, n, T, d] moved `shift` rows later along T (row j holds old row j - shift; zeros before)."""
    if shift == 0:
        return t
    return F.pad(t, (0, 0, shift, 0))[..., :t.shape[2], :]


class Mlp(nn.Module):
    def __init__(self, H, inter):
        super().__init__()
        self.gate_proj, self.up_proj, self.down_proj = linear(H, inter), linear(H, inter), linear(inter, H)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Gate(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.weight = nn.Parameter(torch.empty(c["n_routed_experts"], c["hidden_size"]))
        self.register_buffer("e_score_correction_bias", torch.zeros(c["n_routed_experts"]))

    def forward(self, x):
        """x [N, H] -> (expert ids [N, k], weights [N, k], scores [N, E]) by noaux_tc routing."""
        c = self.c
        E, G, TG, K = c["n_routed_experts"], c["n_group"], c["topk_group"], c["num_experts_per_tok"]
        scores = torch.sigmoid(x.float() @ self.weight.float().t())
        biased = scores.detach() + self.e_score_correction_bias
        group = biased.view(-1, G, E // G).topk(2, dim=-1).values.sum(-1)  # [N, G]
        keep = torch.zeros_like(group).scatter_(1, group.topk(TG, dim=-1).indices, 1.0)
        keep = keep.unsqueeze(-1).expand(-1, G, E // G).reshape(-1, E).bool()
        ids = biased.masked_fill(~keep, float("-inf")).topk(K, dim=-1).indices
        w = scores.gather(1, ids)
        if c["norm_topk_prob"]:
            w = w / (w.sum(-1, keepdim=True) + 1e-20)
        return ids, w * c["routed_scaling_factor"], scores


class Moe(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        H, I = c["hidden_size"], c["moe_intermediate_size"]
        self.gate = Gate(c)
        self.experts = nn.ModuleList([Mlp(H, I) for _ in range(c["n_routed_experts"])])
        self.shared_experts = Mlp(H, I * c["n_shared_experts"])
        self.last_load = None  # tokens per expert in the last forward (for the bias update)
        self.last_balance_loss = None

    def forward(self, x):
        shape = x.shape
        x = x.reshape(-1, shape[-1])
        ids, w, scores = self.gate(x)
        out = torch.zeros_like(x)
        E = self.c["n_routed_experts"]
        load = torch.bincount(ids.flatten(), minlength=E)
        for e in range(E):
            if load[e] == 0:
                continue
            rows, slot = (ids == e).nonzero(as_tuple=True)
            out.index_add_(0, rows, self.experts[e](x[rows]) * w[rows, slot].unsqueeze(-1).to(x.dtype))
        self.last_load = load.detach()
        # DeepSeek-V3's complementary sequence-wise balance loss, over the whole batch here.
        f = load.float() * E / (ids.numel())
        p = (scores / scores.sum(-1, keepdim=True)).mean(0)
        self.last_balance_loss = (f.detach() * p).sum()
        return (out + self.shared_experts(x)).view(shape)


class DecoderLayer(nn.Module):
    def __init__(self, c, moe):
        super().__init__()
        self.input_layernorm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])
        self.self_attn = Attention(c)
        self.post_attention_layernorm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])
        self.mlp = Moe(c) if moe else Mlp(c["hidden_size"], c["intermediate_size"])

    def forward(self, h, cos, sin, lag=0, chain=()):
        a, kv = self.self_attn(self.input_layernorm(h), cos, sin, lag, chain)
        h = h + a
        return h + self.mlp(self.post_attention_layernorm(h)), kv


class SharedHead(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.norm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])


class MtpLayer(DecoderLayer):
    """Layer num_hidden_layers: enorm(embed(next token)) and hnorm(previous hidden) through eh_proj,
    one MoE decoder layer, then shared_head.norm; the embedding and lm_head are the model's."""

    def __init__(self, c):
        super().__init__(c, moe=True)
        H = c["hidden_size"]
        self.enorm, self.hnorm = RMSNorm(H, c["rms_norm_eps"]), RMSNorm(H, c["rms_norm_eps"])
        self.eh_proj = linear(2 * H, H)
        self.shared_head = SharedHead(c)

    def step(self, emb, prev_hidden, cos, sin, lag, chain):
        h = self.eh_proj(torch.cat((self.enorm(emb), self.hnorm(prev_hidden)), -1))
        h, kv = DecoderLayer.forward(self, h, cos, sin, lag, chain)
        return self.shared_head.norm(h), kv


class Model(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.embed_tokens = nn.Embedding(c["vocab_size"], c["hidden_size"])
        self.layers = nn.ModuleList([DecoderLayer(c, moe=i >= c["first_k_dense_replace"]) for i in range(c["num_hidden_layers"])])
        self.norm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])
        self.lm_head = linear(c["hidden_size"], c["vocab_size"])
        self.mtp = MtpLayer(c)
        cos, sin = rope_tables(c["qk_rope_head_dim"], c["max_position_embeddings"], c["rope_theta"])
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.reset_parameters()

    def reset_parameters(self):
        std = 0.02
        out_std = std / math.sqrt(2 * (self.c["num_hidden_layers"] + 1))
        for name, p in self.named_parameters():
            if p.dim() == 1:
                continue
            nn.init.normal_(p, 0.0, out_std if name.endswith(("o_proj.weight", "down_proj.weight")) else std)

    def moe_layers(self):
        return [m for m in self.modules() if isinstance(m, Moe)]

    def forward(self, ids, mtp_depths=0):
        """ids [B, T] -> (logits [B, T, V], [MTP logits of depth 1..D, each [B, T, V]]): main logits at
        j predict ids[j+1]; every depth's logits at j predict ids[j+2] (depth k's row at j took
        ids[j+1] as its token and the depth k-1 hidden state of row j-1)."""
        B, T = ids.shape
        cos, sin = self.rope_cos[:T], self.rope_sin[:T]
        h = self.embed_tokens(ids)
        for layer in self.layers:
            h, _ = layer(h, cos, sin)
        hidden = self.norm(h)
        logits = self.lm_head(hidden)
        mtp_logits = []
        if mtp_depths:
            emb_next = F.pad(self.embed_tokens(ids[:, 1:]), (0, 0, 0, 1))  # row j: token j+1
            prev, chain = hidden, []
            for k in range(1, mtp_depths + 1):
                if k > 1:
                    prev = F.pad(prev, (0, 0, 1, 0))[:, :T]  # row j takes row j-1's output
                lag = k - 1
                call_chain = [chain[0][:2]] + [(ck, cv, k - m) for m, (ck, cv) in enumerate(chain[1:], start=2)] if k > 1 else ()
                out, kv = self.mtp.step(emb_next, prev, cos, sin, lag, call_chain)
                chain.append(kv)
                mtp_logits.append(self.lm_head(out))
                prev = out
        return logits, mtp_logits
