"""Prompts from the held-back chapters for `dsserve bench-speculative --prompts-file`: the first
verse of each held-back window (as bench_acceptance.py prompts), one JSON string a line."""
import argparse
import json

import bpe_tokenizer as bpe
from check_export import held_back_windows


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--work-dir", required=True)
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--output", required=True)
    a = ap.parse_args()
    tok = bpe.load(a.model_dir)
    nl = tok.encode("\n")[0]
    with open(a.output, "w") as f:
        for w in held_back_windows(a.work_dir, tok, 128)[:a.prompts]:
            first = w[1:w.index(nl)] if nl in w else w[1:24]
            f.write(json.dumps(tok.decode(first)) + "\n")


if __name__ == "__main__":
    main()
