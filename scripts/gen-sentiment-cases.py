#!/usr/bin/env python3
"""Generates texts that exercise every VADER rule and its edge cases, with a fixed seed.

    scripts/gen-sentiment-cases.py | scripts/vader-reference.py --jsonl \
        > crates/sentiment/testdata/generated_cases.jsonl

Each text is a random sequence drawn from pools of lexicon words, boosters and dampeners,
negations, "no", "but", "least", idioms, emoji (alone, glued to words, multi-code-point),
emoticons, capitals, punctuation runs and unusual whitespace, so that rules interact the way
they rarely do in natural text (equal scores around "but", negation three words back, a
booster in capitals before a negated word). Standard library only.
"""
import json
import os
import random

SEED = 20141
LEXICON = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "crates", "sentiment", "lexicon", "vader_lexicon.txt")

POOLS = {
    "positive": ["good", "great", "love", "loved", "happy", "excellent", "nice", "awesome", "lol", "win",
                 "fun", "best", "beautiful", "amazing", "wonderful", "perfect", "like", "cool", "hope", "yes"],
    "negative": ["bad", "hate", "terrible", "awful", "sad", "horrible", "worst", "angry", "broken", "fail",
                 "sux", "shit", "killer", "sick", "problem", "wrong", "no", "ugly", "crap", "died"],
    "booster": ["very", "really", "so", "extremely", "totally", "kinda", "sorta", "barely", "hardly",
                "most", "more", "less", "little", "slightly", "fucking", "uber", "friggin", "quite"],
    "negation": ["not", "never", "isn't", "don't", "cannot", "without", "nor", "none", "nothing",
                 "aint", "wasn't", "couldn't", "rarely", "seldom", "despite", "uh-uh", "nope"],
    "glue": ["the", "a", "it", "is", "was", "this", "that", "and", "or", "of", "to", "at", "for", "i",
             "you", "we", "kind", "sort", "just", "enough", "least", "at least", "very least", "doubt",
             "but", "BUT", "But", "so", "this", "right", "yeah", "die", "bomb", "ass", "bad", "bus", "stop",
             "kiss", "death", "beating", "heart", "mustard", "cut"],
    "phrase": ["kind of", "sort of", "just enough", "the shit", "the bomb", "bad ass", "badass", "bus stop",
               "yeah right", "kiss of death", "to die for", "beating heart", "never so", "never this",
               "without doubt", "at least", "no no", "no or", "not bad at all", "kind-of", "n't"],
    "emoji": ["\U0001F600", "\U0001F62D", "\U0001F494", "\u2764", "\u2764\ufe0f", "\U0001F44D",
              "\U0001F44E\U0001F3FD", "\U0001F1FA\U0001F1F8", "\U0001F525", "\U0001F4A9", "\U0001F602",
              "\U0001F621", "\u263A", "\U0001F197", "\U0001F51D"],
    "emoticon": [":)", ":(", ":-)", ":D", ":P", ";)", "<3", ":'(", "xD", "XD", "=)", ":/", "D:", "^_^", "(:"],
    "punct": ["!", "!!", "!!!!!", "?", "??", "???", "?!?!", "...", ",", ".", "-", "'", "\"", "(", ")"],
    "odd": ["\u00e9cole", "\u00c9COLE", "\u01c5ungla", "\u03a3\u0391\u03a3", "\u0130stanbul", "\u2160",
            "GREAT", "LOVE", "HATE", "VERY", "NOT", "NO", "BUT", "Great", "gReAt", "caf\u00e9", "na\u00efve",
            "'great'", "(good)", "good!!!", "\"bad\"", "--love--", "#love", "@hate", "http://x.example/bad"],
}
SPACES = [" ", " ", " ", " ", "  ", "\t", "\n", "\u00a0", "\u3000", "\x1c", "\x1f", "\u2009", "\u200b"]


def token(rng):
    pool = rng.choices(list(POOLS), weights=[5, 5, 3, 3, 6, 2, 2, 2, 2, 2])[0]
    word = rng.choice(POOLS[pool])
    roll = rng.random()
    if roll < 0.06:
        word = word.upper()
    elif roll < 0.09:
        word = word.capitalize()
    if rng.random() < 0.05:
        word += rng.choice(POOLS["punct"])
    if rng.random() < 0.03:
        word = rng.choice(POOLS["emoji"]) + word  # glued emoji
    return word


def text(rng):
    length = rng.choice([1, 2, 3, 4, 5, 6, 8, 10, 14, 20, 30])
    parts = []
    for _ in range(length):
        parts.append(token(rng))
        parts.append(rng.choice(SPACES))
    if rng.random() < 0.2:
        parts.insert(0, rng.choice(SPACES))
    return "".join(parts).rstrip(" ") if rng.random() < 0.7 else "".join(parts)


def main():
    rng = random.Random(SEED)
    seen = set()
    out = []
    while len(out) < 20000:
        t = text(rng)
        if t in seen:
            continue
        seen.add(t)
        out.append(t)
    # Repeated equal scores around "but", the reference's list.index quirk.
    for a in range(60):
        words = [rng.choice(["good", "bad", "great", "love", "hate"]) for _ in range(rng.randint(2, 12))]
        words.insert(rng.randint(0, len(words)), "but")
        if rng.random() < 0.5:
            words.insert(rng.randint(0, len(words)), "but")
        out.append(" ".join(words))
    # A score before "but" that, halved, equals one after it: the reference then halves the
    # earlier position twice and leaves the later one unscaled, which changes the result.
    lexicon = {}
    with open(LEXICON, encoding="utf-8") as f:
        for line in f:
            word, valence = line.rstrip("\n").split("\t")[0:2]
            if word.isalpha() and word.islower():
                lexicon[word] = float(valence)
    by_valence = {}
    for word, valence in sorted(lexicon.items()):
        by_valence.setdefault(valence, []).append(word)
    pairs = [(a, b) for v, words in sorted(by_valence.items()) if v / 2 in by_valence
             for a in words[:2] for b in by_valence[v / 2][:2]]
    for _ in range(300):
        a, b = rng.choice(pairs)
        glue = [rng.choice(["the", "it", "was", "and", "very", "not", "so", a, b]) for _ in range(rng.randint(0, 4))]
        words = [a] + glue + ["but"] + [rng.choice(["the", "it", "is"]) for _ in range(rng.randint(0, 3))] + [b]
        if rng.random() < 0.5:
            words.append(rng.choice([a, b, "good", "!", "??"]))
        out.append(" ".join(words))
    for t in out:
        print(json.dumps({"text": t}, ensure_ascii=False))


if __name__ == "__main__":
    main()
