"""cleanco's legal-form stripping, asked only about the legal forms a name could hold.

cleanco's `basename` tries each of its 321 legal forms in turn against the end of the name: about 40 us a
name, the largest cost of identity resolution when names change. A form can only match if every word of it
is a word of the name (stripping only removes words), so trying just those forms, in cleanco's own order,
gives exactly cleanco's answer. The forms are cleanco's, never ours to maintain.
"""

from __future__ import annotations

from collections import defaultdict
from functools import cache

from cleanco.clean import custom_basename, normalized, prepare_default_terms, strip_punct, strip_tail

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
    """`cleanco.basename(name)`, the same answer: the name without its trailing legal forms."""
    terms, by_word = _terms_by_word()
    words = set(map(strip_punct, normalized(strip_tail(name)).split()))
    candidates = {p for word in words for p in by_word.get(word, ())}
    possible = [terms[p] for p in sorted(candidates) if set(terms[p][1]) <= words]
    return custom_basename(name, possible)
