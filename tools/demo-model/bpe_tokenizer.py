"""A byte-level BPE tokenizer trained on the corpus, written in Hugging Face tokenizer.json form with
DeepSeek-V3's special tokens (tokenizer_config.json carries its chat template), and the encoder the
training uses. Pre-tokenization is GPT-2's (ByteLevel with use_regex), here for ASCII text, which is
all the corpus holds."""
import collections
import json
import re

BOS, EOS, PAD = "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜▁pad▁｜>"
USER, ASSISTANT = "<｜User｜>", "<｜Assistant｜>"
# DeepSeek-V3's special tokens: the first three lead the vocabulary, the rest end it.
LEADING_SPECIALS = [(BOS, True), (EOS, True), (PAD, True)]
TRAILING_SPECIALS = [("<｜fim▁hole｜>", False), ("<｜fim▁begin｜>", False), ("<｜fim▁end｜>", False), (USER, False),
                     (ASSISTANT, False), ("<|EOT|>", True), ("<｜tool▁calls▁begin｜>", False),
                     ("<｜tool▁calls▁end｜>", False), ("<｜tool▁call▁begin｜>", False), ("<｜tool▁call▁end｜>", False),
                     ("<｜tool▁outputs▁begin｜>", False), ("<｜tool▁outputs▁end｜>", False),
                     ("<｜tool▁output▁begin｜>", False), ("<｜tool▁output▁end｜>", False), ("<｜tool▁sep｜>", False)]

# GPT-2's pattern with \p{L} and \p{N} spelled for ASCII.
PRETOKEN = re.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]+|\s+(?!\S)|\s+""")
SPECIAL_SPLIT = re.compile("(" + "|".join(re.escape(t) for t, _ in LEADING_SPECIALS + TRAILING_SPECIALS) + ")")


def byte_alphabet():
    """GPT-2's byte -> printable character map used by ByteLevel."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    chars, n = list(keep), 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(keep, chars)}


BYTE_CHAR = byte_alphabet()


def spell(text):
    return "".join(BYTE_CHAR[b] for b in text.encode("utf-8"))


def train(texts, vocab_size):
    """Merges [(a, b)] learned from word counts until the vocabulary holds vocab_size entries."""
    counts = collections.Counter()
    for t in texts:
        for piece in SPECIAL_SPLIT.split(t):
            if piece and not SPECIAL_SPLIT.fullmatch(piece):
                counts.update(PRETOKEN.findall(piece))
    words = [list(spell(w)) for w in counts]
    freq = list(counts.values())
    pairs = collections.Counter()
    where = collections.defaultdict(set)
    for i, w in enumerate(words):
        for a, b in zip(w, w[1:]):
            pairs[a, b] += freq[i]
            where[a, b].add(i)
    n_merges = vocab_size - len(LEADING_SPECIALS) - 256 - len(TRAILING_SPECIALS)
    merges = []
    while len(merges) < n_merges and pairs:
        best = max(pairs, key=lambda p: (pairs[p], p))
        if pairs[best] < 2:
            break
        merges.append(best)
        merged = best[0] + best[1]
        for i in list(where[best]):
            w = words[i]
            for a, b in zip(w, w[1:]):
                pairs[a, b] -= freq[i]
                if pairs[a, b] <= 0:
                    del pairs[a, b]
                where[a, b].discard(i)
            out, j = [], 0
            while j < len(w):
                if j + 1 < len(w) and w[j] == best[0] and w[j + 1] == best[1]:
                    out.append(merged)
                    j += 2
                else:
                    out.append(w[j])
                    j += 1
            words[i] = out
            for a, b in zip(out, out[1:]):
                pairs[a, b] += freq[i]
                where[a, b].add(i)
        where.pop(best, None)
    return merges


class Tokenizer:
    def __init__(self, merges):
        self.merges = [tuple(m) for m in merges]
        self.rank = {m: i for i, m in enumerate(self.merges)}
        vocab = [t for t, _ in LEADING_SPECIALS] + [BYTE_CHAR[b] for b in range(256)]
        vocab += [a + b for a, b in self.merges] + [t for t, _ in TRAILING_SPECIALS]
        self.vocab = vocab
        self.id_of = {t: i for i, t in enumerate(vocab)}
        self.cache = {}

    def encode_word(self, spelled):
        if spelled in self.cache:
            return self.cache[spelled]
        syms = list(spelled)
        while len(syms) > 1:
            ranked = [(self.rank.get((a, b), 1 << 30), i) for i, (a, b) in enumerate(zip(syms, syms[1:]))]
            r, i = min(ranked)
            if r == 1 << 30:
                break
            syms[i:i + 2] = [syms[i] + syms[i + 1]]
        ids = [self.id_of[s] for s in syms]
        self.cache[spelled] = ids
        return ids

    def encode(self, text):
        """Ids of text, special tokens written in it included (no BOS is added)."""
        ids = []
        for piece in SPECIAL_SPLIT.split(text):
            if not piece:
                continue
            if piece in self.id_of and SPECIAL_SPLIT.fullmatch(piece):
                ids.append(self.id_of[piece])
                continue
            for w in PRETOKEN.findall(piece):
                ids.extend(self.encode_word(spell(w)))
        return ids

    def decode(self, ids):
        char_byte = {c: b for b, c in BYTE_CHAR.items()}
        out = bytearray()
        for i in ids:
            t = self.vocab[i]
            if all(c in char_byte for c in t):
                out.extend(char_byte[c] for c in t)
            else:
                out.extend(t.encode("utf-8"))
        return out.decode("utf-8", errors="replace")

    def tokenizer_json(self):
        added = []
        specials = [(t, s, i) for i, (t, s) in enumerate(LEADING_SPECIALS)]
        specials += [(t, s, len(self.vocab) - len(TRAILING_SPECIALS) + i) for i, (t, s) in enumerate(TRAILING_SPECIALS)]
        for t, special, i in specials:
            added.append({"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
                          "normalized": not special, "special": special})
        return {
            "version": "1.0", "truncation": None, "padding": None, "added_tokens": added, "normalizer": None,
            "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
            "post_processor": None,
            "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
            "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                      "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                      "vocab": {t: i for i, t in enumerate(self.vocab)},
                      "merges": [a + " " + b for a, b in self.merges]},
        }


def tokenizer_config(chat_template):
    tok = lambda t: {"__type": "AddedToken", "content": t, "lstrip": False, "normalized": True, "rstrip": False,
                     "single_word": False}
    return {"add_bos_token": True, "add_eos_token": False, "bos_token": tok(BOS), "eos_token": tok(EOS),
            "pad_token": tok(EOS), "clean_up_tokenization_spaces": False, "legacy": True,
            "model_max_length": 16384, "unk_token": None, "tokenizer_class": "LlamaTokenizerFast",
            "chat_template": chat_template}


def save(tok, chat_template, out_dir):
    with open(f"{out_dir}/tokenizer.json", "w", encoding="utf-8") as f:
        json.dump(tok.tokenizer_json(), f, ensure_ascii=False)
    with open(f"{out_dir}/tokenizer_config.json", "w", encoding="utf-8") as f:
        json.dump(tokenizer_config(chat_template), f, ensure_ascii=False, indent=2)


def load(out_dir):
    j = json.load(open(f"{out_dir}/tokenizer.json", encoding="utf-8"))
    return Tokenizer([tuple(m.split(" ")) for m in j["model"]["merges"]])
