"""The published DeepSeek-V3 layout from a trained model.Model and back: bf16 and block-FP8 (e4m3,
128x128 blocks, float32 weight_scale_inv) encodings in numpy, safetensors shards with their index,
and the checkpoint's tensor names (the MTP module as layer num_hidden_layers, without copies of the
shared embedding and head)."""
import json
import os
import struct

import numpy as np
import torch

BLOCK = 128
E4M3_MAX = 448.0


def bf16_bits(x):
    """float32 array -> uint16 bf16 bits, round to nearest even."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def bf16_value(bits):
    return (bits.astype(np.uint32) << 16).view(np.float32)


def e4m3_table():
    """The float value of each e4m3fn byte (0x7F and 0xFF are NaN)."""
    v = np.zeros(256, dtype=np.float64)
    for b in range(256):
        s, e, m = b >> 7, (b >> 3) & 0xF, b & 7
        mag = (m / 8.0) * 2.0 ** -6 if e == 0 else (1 + m / 8.0) * 2.0 ** (e - 7)
        v[b] = -mag if s else mag
    v[0x7F] = v[0xFF] = np.nan
    return v


E4M3 = e4m3_table()
_POS = E4M3[:0x7F]  # bytes 0..126: increasing non-negative values


def e4m3_bytes(x):
    """float array (already scaled into [-448, 448]) -> e4m3fn bytes, round to nearest, ties to even."""
    a = np.abs(x.astype(np.float64))
    hi = np.clip(np.searchsorted(_POS, a), 1, len(_POS) - 1)
    lo = hi - 1
    dlo, dhi = a - _POS[lo], _POS[hi] - a
    pick = np.where((dhi < dlo) | ((dhi == dlo) & (hi % 2 == 0)), hi, lo)
    pick = np.where(a >= _POS[-1], len(_POS) - 1, pick)
    return (pick | np.where(np.signbit(x), 0x80, 0)).astype(np.uint8)


def quantize_fp8(w):
    """w [out, in] float32 -> (e4m3 bytes [out, in], weight_scale_inv [ceil(out/128), ceil(in/128)])."""
    out_f, in_f = w.shape
    br, bc = -(-out_f // BLOCK), -(-in_f // BLOCK)
    q = np.zeros(w.shape, dtype=np.uint8)
    s = np.zeros((br, bc), dtype=np.float32)
    for i in range(br):
        for j in range(bc):
            blk = w[i * BLOCK:(i + 1) * BLOCK, j * BLOCK:(j + 1) * BLOCK]
            amax = float(np.abs(blk).max())
            scale = np.float32(amax / E4M3_MAX if amax > 0 else 1.0)
            s[i, j] = scale
            q[i * BLOCK:(i + 1) * BLOCK, j * BLOCK:(j + 1) * BLOCK] = e4m3_bytes(blk / scale)
    return q, s


def dequantize_fp8(q, s):
    """As dsserve's CPU oracle and DeepSeek's FP8-to-BF16 conversion: value x scale, rounded to bf16."""
    rep = np.repeat(np.repeat(s, BLOCK, 0), BLOCK, 1)[:q.shape[0], :q.shape[1]]
    return bf16_value(bf16_bits((E4M3[q] * rep).astype(np.float32)))


def is_fp8_linear(name):
    """Linear weights the published checkpoint stores as block FP8 (not the router, eh_proj, embeddings, head)."""
    return name.endswith(".weight") and any(k in name for k in (
        "q_a_proj", "q_b_proj", "kv_a_proj_with_mqa", "kv_b_proj", "o_proj", "gate_proj", "up_proj", "down_proj"))


def checkpoint_name(name, num_layers):
    """model.Model parameter name -> the checkpoint's."""
    if name.startswith("mtp."):
        return f"model.layers.{num_layers}." + name[len("mtp."):]
    if name == "lm_head.weight":
        return name
    return "model." + name


def export_tensors(state, cfg, fp8=True):
    """{checkpoint name: (dtype string, numpy array)} of a model.Model state dict."""
    out = {}
    for name, t in state.items():
        if name.startswith("rope_"):
            continue
        ck = checkpoint_name(name, cfg["num_hidden_layers"])
        w = t.detach().float().cpu().numpy()
        if name.endswith("e_score_correction_bias"):
            out[ck] = ("F32", w.astype(np.float32))
        elif fp8 and is_fp8_linear(name):
            q, s = quantize_fp8(w)
            out[ck] = ("F8_E4M3", q)
            out[ck[:-len("weight")] + "weight_scale_inv"] = ("F32", s)
        else:
            out[ck] = ("BF16", bf16_bits(w))
    return out


def write_safetensors(path, tensors):
    header, offset, blobs = {}, 0, []
    for name in sorted(tensors):
        dtype, arr = tensors[name]
        b = np.ascontiguousarray(arr).tobytes()
        header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [offset, offset + len(b)]}
        offset += len(b)
        blobs.append(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def write_checkpoint(out_dir, tensors, shards=2):
    """Shards split by size, in name order, with model.safetensors.index.json."""
    names = sorted(tensors)
    total = sum(tensors[n][1].nbytes for n in names)
    groups, acc, cur = [[] for _ in range(shards)], 0, 0
    for n in names:
        if acc >= (cur + 1) * total / shards and cur < shards - 1:
            cur += 1
        groups[cur].append(n)
        acc += tensors[n][1].nbytes
    weight_map = {}
    for i, g in enumerate(groups):
        fname = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        write_safetensors(os.path.join(out_dir, fname), {n: tensors[n] for n in g})
        weight_map.update({n: fname for n in g})
    with open(os.path.join(out_dir, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=1, sort_keys=True)


def read_checkpoint(model_dir):
    """{name: float32 numpy array} of a checkpoint, FP8 weights dequantized as dsserve's CPU oracle does."""
    index = json.load(open(os.path.join(model_dir, "model.safetensors.index.json")))
    raw = {}
    for fname in sorted(set(index["weight_map"].values())):
        with open(os.path.join(model_dir, fname), "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            header = json.loads(f.read(n))
            data = f.read()
        for name, h in header.items():
            if name == "__metadata__":
                continue
            a, b = h["data_offsets"]
            np_type = {"F32": np.float32, "BF16": np.uint16, "F8_E4M3": np.uint8}[h["dtype"]]
            raw[name] = (h["dtype"], np.frombuffer(data[a:b], dtype=np_type).reshape(h["shape"]))
    out = {}
    for name, (dtype, arr) in raw.items():
        if name.endswith("weight_scale_inv"):
            continue
        if dtype == "F8_E4M3":
            out[name] = dequantize_fp8(arr, raw[name[:-len("weight")] + "weight_scale_inv"][1])
        elif dtype == "BF16":
            out[name] = bf16_value(arr)
        else:
            out[name] = arr.astype(np.float32)
    return out


def load_into(model, model_dir):
    """Loads a checkpoint written by write_checkpoint into model.Model (float32)."""
    tensors = read_checkpoint(model_dir)
    L = model.c["num_hidden_layers"]
    state = {}
    for name, t in model.state_dict().items():
        if name.startswith("rope_"):
            state[name] = t
            continue
        ck = checkpoint_name(name, L)
        if ck not in tensors:
            raise KeyError(f"{model_dir}: tensor {ck} missing")
        state[name] = torch.from_numpy(np.array(tensors[ck])).reshape(t.shape)
    model.load_state_dict(state)
    return model
