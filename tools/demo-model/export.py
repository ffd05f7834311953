"""Step 3 of the demo model: the trained checkpoint.pt -> the published DeepSeek-V3 layout in the
model folder (config.json with the FP8 quantization_config, two safetensors shards and their index,
block-FP8 linears with weight_scale_inv), beside the tokenizer files prepare.py wrote."""
import argparse
import json
import os

import torch

import checkpoint_io as cio


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--work-dir", required=True)
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--bf16", action="store_true", help="bf16 linears instead of block FP8")
    a = ap.parse_args()
    ck = torch.load(os.path.join(a.work_dir, "checkpoint.pt"))
    cfg = dict(ck["config"])
    if not a.bf16:
        cfg["quantization_config"] = {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
                                      "weight_block_size": [cio.BLOCK, cio.BLOCK]}
    os.makedirs(a.model_dir, exist_ok=True)
    for f in os.listdir(a.model_dir):
        if f.endswith(".safetensors"):
            os.remove(os.path.join(a.model_dir, f))
    cio.write_checkpoint(a.model_dir, cio.export_tensors(ck["state"], cfg, fp8=not a.bf16))
    with open(os.path.join(a.model_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    size = sum(os.path.getsize(os.path.join(a.model_dir, f)) for f in os.listdir(a.model_dir))
    print(f"exported step {ck['step']} to {a.model_dir}: {size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
