#!/usr/bin/env python3
"""Writes data/basic_words.jsonl: BERT BasicTokenizer words of tricky strings, per Python.

The words come from BERT's basic tokenization (Megatron's bert_tokenization.py semantics:
clean, CJK spacing, whitespace split, lower + NFD + drop Mn for the lower-case variant,
punctuation split), written here against Python's own `unicodedata` and `str`, so the C++
tables (plugins/tokenizers/bert_wordpiece/unicode_tables.inc) are checked against Python on
characters the golden vocabularies cannot tell apart (they are ASCII-only). Committed; rerun:

    python3 gen_basic_words.py > data/basic_words.jsonl
"""
import json
import random
import sys
import unicodedata

CJK = [(0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F), (0x2B740, 0x2B81F),
       (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F)]


def is_cjk(cp):
    return any(lo <= cp <= hi for lo, hi in CJK)


def dropped(c):
    return c not in "\t\n\r" and (ord(c) in (0, 0xFFFD) or unicodedata.category(c) in ("Cc", "Cf"))


def is_space(c):
    return c in " \t\n\r" or unicodedata.category(c) == "Zs"


def is_punct(c):
    cp = ord(c)
    return (33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126
            or unicodedata.category(c).startswith("P"))


def words(text, lower):
    cleaned = "".join(" " if is_space(c) else c for c in text if not dropped(c))
    spaced = "".join(" %s " % c if is_cjk(ord(c)) else c for c in cleaned)
    out = []
    for token in spaced.split():
        if lower:
            token = "".join(c for c in unicodedata.normalize("NFD", token.lower())
                            if unicodedata.category(c) != "Mn")
        word = ""
        for c in token:
            if is_punct(c):
                if word:
                    out.append(word)
                out.append(c)
                word = ""
            else:
                word += c
        if word:
            out.append(word)
    return " ".join(out).split()


FIXED = [
    "Hello, World!", "ΣΑΣ ΟΔΟΣ ΣΟΦΟΣ. Σ ΑΣ' ΑΣ̈Α", "İstanbul İİ", "Ångström café naïve ﬁ",
    "a\u0301\u0327b q\u0307\u0323 x\u0323\u0307", "한국어 텍스트", "中文字符 mixed日本English",
    "\uF900\uFA10 compatibility", "zero\u200bwidth soft\u00adhyphen", "line\u2028sep para\u2029sep",
    "nbsp\u00a0here ideo\u3000space", "ctrl\x01\x1c\x85char\ufffd\x00x", "tab\tand\rcarriage\nnew",
    "“quoted” ‘single’ «guill» ¿que? ¡si!", "$100.00 €50 £20 ¥1000 100% 50°C", "a-b–c—d",
    "emoji 😀👍🏽🇫🇷 👨\u200d👩\u200d👧", "𝐀𝐁𝐂 𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "Ǆemal ǅ ǆ ᾼ ᾈ", "\u0301alone \u0345x",
    "KELVIN \u212a OHM \u2126 Å", "ΐ ΰ ᾷ", "\U0001d165\U0001d16e\U0001d165 music",
    "x\U0001d16d\U0001d165 y\u302e\U00016ff0",  # spacing marks (kept) that NFD reorders by combining class
]

POOL = (
    list("aAzZ09 ,.'-_#") + [chr(c) for c in range(0x00C0, 0x0250)] + [chr(c) for c in range(0x0300, 0x0350)]
    + [chr(c) for c in range(0x0370, 0x0400)] + [chr(c) for c in range(0x0400, 0x0460)]
    + [chr(c) for c in range(0x1E00, 0x1F00, 3)] + [chr(c) for c in range(0x1F00, 0x2000)]
    + [chr(c) for c in range(0x2000, 0x2070)] + [chr(c) for c in range(0x3000, 0x3040)]
    + [chr(c) for c in range(0xAC00, 0xAC40)] + [chr(c) for c in range(0x4E00, 0x4E10)]
    + [chr(c) for c in range(0xF900, 0xF910)] + [chr(c) for c in range(0xFF00, 0xFF60)]
    + ["\u0130", "\u03a3", "\u03a3", "\u03a3", "\u00ad", "\u200b", "\u2028", "\ufffd", "\x00", "\x7f", "\x1f",
       "\U0001d15e", "\U0001d165", "\U0001d16e", "\U0001f600", "\U00020000", "\U0002f800", "\U000e0001"]
)
POOL = [c for c in POOL if not 0xD800 <= ord(c) <= 0xDFFF]


def main():
    rng = random.Random(1234)
    texts = FIXED + ["".join(rng.choice(POOL) for _ in range(rng.randint(1, 40))) for _ in range(400)]
    out = sys.stdout
    for t in texts:
        out.write(json.dumps({"text": t, "lower": words(t, True), "cased": words(t, False)}, ensure_ascii=True) + "\n")


if __name__ == "__main__":
    main()
