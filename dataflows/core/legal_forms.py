"""cleanco's legal-form stripping, asked only about the legal forms a name could hold.

cleanco's `basename` tries each of its 321 legal forms in turn against the end of the name: about 40 us a
name, the largest cost of identity resolution when names change. A form can only match if every word of it
is a word of the name (stripping only removes words), so trying just those forms, in cleanco's own order,
gives exactly cleanco's answer. The forms are cleanco's, never ours to maintain.
"""

from __future__ import annotations

from collections import defaultdict
from functools import cache

from cleanco.clean import normalized, prepare_default_terms, strip_punct, strip_tail

Term = tuple[int, list[str]]  # cleanco's (number of words, words) of one legal form


@cache
def _terms_by_word() -> tuple[list[Term], dict[str, list[int]]]:
    """cleanco's forms in its order, and for each word the positions of the forms that contain it."""
    terms = prepare_default_terms()
    by_word: dict[str, list[int]] = defaultdict(list)
    for position, (_size, words) in enumerate(terms):
        for word in set(words):
            by_word[word].append(position)
    return terms, dict(by_word)


def basename(name: str) -> str:
    """`cleanco.basename(name)`, the same answer: the name without its trailing legal forms. The name is
    normalized once (cleanco's `custom_basename` would normalize it again): the forms are tried in
    cleanco's order against the end of the name, each removing its words from both spellings."""
    terms, by_word = _terms_by_word()
    name = strip_tail(name)
    original = name.split()
    folded = list(map(strip_punct, normalized(name).split()))
    words = set(folded)
    candidates = sorted({p for word in words for p in by_word.get(word, ())})
    for size, form in (terms[p] for p in candidates):
        if folded[-size:] == form:
            del folded[-size:], original[-size:]
    return strip_tail(" ".join(original))
