"""`dsserve bench-serving` against the demo model with held-back text as its ShareGPT prompts
(held_back_sharegpt.json: a verse asked, the next three as the reply), on a plain server and on EAGLE servers,
at --max-concurrency 1 and 32; the acceptance length from the server's /get_server_info after
each run. Prints one JSON line per run and keeps them in bench_serving.json in the work folder."""
import argparse
import json
import os
import subprocess
import tempfile

from dsserve_client import Server


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--work-dir", required=True, help="where bench_serving_<device>.json goes")
    ap.add_argument("--dataset-path", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                           "held_back_sharegpt.json"))
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--dsserve", required=True)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--output-len", type=int, default=64)
    ap.add_argument("--settings", default="0,3x1", help="0 (plain) or steps x topk, comma-separated")
    a = ap.parse_args()
    data = a.dataset_path
    results = []
    for s in a.settings.split(","):
        flags = []
        if s != "0":
            steps, topk = map(int, s.split("x"))
            draft = steps + 1 if topk == 1 else min(8, steps * topk + 1)
            flags = ["--speculative-algorithm", "EAGLE", "--speculative-num-steps", str(steps),
                     "--speculative-eagle-topk", str(topk), "--speculative-num-draft-tokens", str(draft)]
        for c in a.concurrency:
            with Server(a.dsserve, a.model_dir, ["--device", a.device, "--max-running-requests", "64", *flags]) as srv:
                out = os.path.join(tempfile.mkdtemp(prefix="demo-bench-"), "out.jsonl")
                subprocess.run([a.dsserve, "bench-serving", "--base-url", srv.base, "--dataset-path", data,
                                "--num-prompts", str(max(8, c)), "--max-concurrency", str(c),
                                "--random-output-len", str(a.output_len), "--output-file", out],
                               check=True, stdout=subprocess.DEVNULL)
                r = json.loads(open(out).read().splitlines()[-1])
                info = srv.get("/get_server_info")
                r["setting"] = "plain" if s == "0" else f"EAGLE {s}"
                r["max_concurrency"] = c
                r["avg_spec_accept_length"] = info["internal_states"][0].get("avg_spec_accept_length")
                results.append(r)
                print(json.dumps(r), flush=True)
    with open(os.path.join(a.work_dir, f"bench_serving_{a.device}.json"), "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
