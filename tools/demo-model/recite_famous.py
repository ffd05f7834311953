"""The chat route on the 35 famous verses of kjv_corpus.FAMOUS through a `dsserve serve` of the
model folder, greedily: "Recite <reference>." and "Continue this verse: <first four words>"; an
answer counts when it holds the verse's whole text. Prints one line per verse and the two counts."""
import argparse

import kjv_corpus as kjv
from dsserve_client import Server


def ask(srv, content):
    body = {"model": "demo", "messages": [{"role": "user", "content": content}], "max_tokens": 64, "temperature": 0}
    return srv.post("/v1/chat/completions", body)["choices"][0]["message"]["content"]


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--dsserve", required=True)
    ap.add_argument("--bible-text", help="a saved `bible -f Gen1:1-Rev22:21` dump instead of running the program")
    a = ap.parse_args()
    by_ref = {kjv.reference(v): v[3] for v in kjv.read_verses(a.bible_text)}
    recited = continued = 0
    with Server(a.dsserve, a.model_dir, ["--device", "cpu"]) as srv:
        for ref in kjv.FAMOUS:
            text = by_ref[ref]
            r = ask(srv, f"Recite {ref}.")
            c = ask(srv, "Continue this verse: " + " ".join(text.split(" ")[:4]))
            recited += text in r
            continued += text in c
            print(f"{ref:20} recite {'ok ' if text in r else 'no '} {r[:60]!r:64} continue {'ok' if text in c else 'no'}")
    n = len(kjv.FAMOUS)
    print(f"recited exactly: {recited}/{n}; continued exactly: {continued}/{n}")


if __name__ == "__main__":
    main()
