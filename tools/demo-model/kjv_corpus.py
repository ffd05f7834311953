"""The King James Version from Debian's bible-kjv packages as verses, split into training and
held-back chapters, and the training documents built from it: runs of plain verses and chat
exchanges (recite a verse by reference, continue a started verse). Tokenization lives elsewhere."""
import random
import re
import subprocess

# The `bible` program's book abbreviations -> the names people use.
BOOKS = [
    ("Ge", "Genesis"), ("Exo", "Exodus"), ("Lev", "Leviticus"), ("Num", "Numbers"), ("Deu", "Deuteronomy"),
    ("Josh", "Joshua"), ("Jdgs", "Judges"), ("Ruth", "Ruth"), ("1Sm", "1 Samuel"), ("2Sm", "2 Samuel"),
    ("1Ki", "1 Kings"), ("2Ki", "2 Kings"), ("1Chr", "1 Chronicles"), ("2Chr", "2 Chronicles"), ("Ezra", "Ezra"),
    ("Neh", "Nehemiah"), ("Est", "Esther"), ("Job", "Job"), ("Psa", "Psalm"), ("Prv", "Proverbs"),
    ("Eccl", "Ecclesiastes"), ("SSol", "Song of Solomon"), ("Isa", "Isaiah"), ("Jer", "Jeremiah"),
    ("Lam", "Lamentations"), ("Eze", "Ezekiel"), ("Dan", "Daniel"), ("Hos", "Hosea"), ("Joel", "Joel"),
    ("Amos", "Amos"), ("Obad", "Obadiah"), ("Jonah", "Jonah"), ("Mic", "Micah"), ("Nahum", "Nahum"),
    ("Hab", "Habakkuk"), ("Zep", "Zephaniah"), ("Hag", "Haggai"), ("Zec", "Zechariah"), ("Mal", "Malachi"),
    ("Mat", "Matthew"), ("Mark", "Mark"), ("Luke", "Luke"), ("John", "John"), ("Acts", "Acts"),
    ("Rom", "Romans"), ("1Cor", "1 Corinthians"), ("2Cor", "2 Corinthians"), ("Gal", "Galatians"),
    ("Eph", "Ephesians"), ("Phi", "Philippians"), ("Col", "Colossians"), ("1Th", "1 Thessalonians"),
    ("2Th", "2 Thessalonians"), ("1Tim", "1 Timothy"), ("2Tim", "2 Timothy"), ("Titus", "Titus"),
    ("Phmn", "Philemon"), ("Heb", "Hebrews"), ("Jas", "James"), ("1Pet", "1 Peter"), ("2Pet", "2 Peter"),
    ("1Jn", "1 John"), ("2Jn", "2 John"), ("3Jn", "3 John"), ("Jude", "Jude"), ("Rev", "Revelation"),
]
BOOK_NAME = dict(BOOKS)

# Verses a reader knows: asked for often in the chat examples, and never held back.
FAMOUS = [
    "Genesis 1:1", "Genesis 1:2", "Genesis 1:3", "Genesis 1:27", "Exodus 20:3", "Exodus 20:13", "Psalm 23:1",
    "Psalm 23:2", "Psalm 23:3", "Psalm 23:4", "Psalm 46:1", "Psalm 119:105", "Proverbs 3:5", "Ecclesiastes 3:1",
    "Isaiah 40:31", "Jeremiah 29:11", "Matthew 5:3", "Matthew 5:9", "Matthew 6:9", "Matthew 7:7",
    "Matthew 22:39", "Luke 2:14", "John 1:1", "John 3:16", "John 11:35", "John 14:6", "Romans 3:23",
    "Romans 6:23", "Romans 8:28", "1 Corinthians 13:4", "1 Corinthians 13:13", "Philippians 4:13",
    "Hebrews 11:1", "1 John 4:8", "Revelation 22:21",
]

LINE = re.compile(r"^([1-3]?[A-Za-z]+)(\d+):(\d+) (.*)$")


def read_verses(bible_path=None):
    """[(book, chapter, verse, text)] in canonical order, from the `bible` program or a saved dump."""
    if bible_path:
        lines = open(bible_path, encoding="ascii").read().splitlines()
    else:
        out = subprocess.run(["bible", "-f", "Gen1:1-Rev22:21"], check=True, capture_output=True, text=True)
        lines = out.stdout.splitlines()
    verses = []
    for line in lines:
        m = LINE.match(line.strip())
        if not m:
            raise ValueError(f"bible text: cannot parse line {line!r}")
        verses.append((BOOK_NAME[m.group(1)], int(m.group(2)), int(m.group(3)), m.group(4).strip()))
    if len(verses) != 31102:
        raise ValueError(f"bible text: expected 31102 verses, found {len(verses)}")
    return verses


def reference(v):
    return f"{v[0]} {v[1]}:{v[2]}"


def split_chapters(verses, every=40):
    """(train, held_back): whole chapters, every `every`-th one held back unless it holds a famous verse."""
    famous_chapters = {r.rsplit(":", 1)[0] for r in FAMOUS}
    chapters, order = {}, []
    for v in verses:
        key = f"{v[0]} {v[1]}"
        if key not in chapters:
            chapters[key] = []
            order.append(key)
        chapters[key].append(v)
    train, held = [], []
    for i, key in enumerate(order):
        (held if i % every == every // 2 and key not in famous_chapters else train).append(chapters[key])
    return train, held


def plain_documents(chapters, rng, max_verses=8):
    """Runs of 1..max_verses consecutive verses, one verse a line, covering every chapter once."""
    docs = []
    for ch in chapters:
        i = 0
        while i < len(ch):
            n = rng.randint(1, max_verses)
            docs.append("\n".join(v[3] for v in ch[i:i + n]))
            i += n
    return docs


RECITE_ASKS = ["Recite {r}.", "What does {r} say?", "Quote {r}.", "Say {r} from the King James Bible.",
               "{r}", "Please recite {r}."]
CONTINUE_ASKS = ["Continue this verse: {s}", "Finish the verse: {s}", "Complete: {s}"]


def chat_exchanges(verses, rng, count, famous_share=0.5):
    """[(user, assistant)]: a recitation asked by reference, or the rest of a started verse."""
    by_ref = {reference(v): v for v in verses}
    famous = [by_ref[r] for r in FAMOUS]
    out = []
    for _ in range(count):
        v = rng.choice(famous) if rng.random() < famous_share else rng.choice(verses)
        words = v[3].split(" ")
        if rng.random() < 0.6 or len(words) < 6:
            ask = rng.choice(RECITE_ASKS).format(r=reference(v))
            out.append((ask, f"{reference(v)}: {v[3]}"))
        else:
            k = rng.randint(3, max(3, len(words) // 2))
            ask = rng.choice(CONTINUE_ASKS).format(s=" ".join(words[:k]))
            out.append((ask, v[3]))
    return out
