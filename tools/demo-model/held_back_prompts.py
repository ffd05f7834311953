"""Prompts from the held-back chapters: for `dsserve bench-speculative --prompts-file` the first
verse of each held-back window (as bench_acceptance.py prompts), one JSON string a line; for
`dsserve bench-serving --dataset-path` (with --sharegpt-output) ShareGPT conversations, a verse
asked and the next three as the reply."""
import argparse
import json
import os

import bpe_tokenizer as bpe
from check_export import held_back_windows


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--work-dir", required=True)
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--output", required=True)
    ap.add_argument("--sharegpt-output")
    a = ap.parse_args()
    tok = bpe.load(a.model_dir)
    nl = tok.encode("\n")[0]
    with open(a.output, "w") as f:
        for w in held_back_windows(a.work_dir, tok, 128)[:a.prompts]:
            first = w[1:w.index(nl)] if nl in w else w[1:24]
            f.write(json.dumps(tok.decode(first)) + "\n")
    if a.sharegpt_output:
        items = []
        for ch in json.load(open(os.path.join(a.work_dir, "held_back.json"))):
            verses = ch["text"].split("\n")
            for i in range(0, len(verses) - 1, 4):
                items.append({"conversations": [{"from": "human", "value": verses[i]},
                                                {"from": "gpt", "value": "\n".join(verses[i + 1:i + 4])}]})
        with open(a.sharegpt_output, "w") as f:
            json.dump(items, f, indent=0)


if __name__ == "__main__":
    main()
