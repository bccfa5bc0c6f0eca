"""Our legal-form lookup answers exactly as cleanco's basename, for names built from cleanco's own forms
(several, repeated, in any case, with punctuation and accents) and from ordinary words."""

from __future__ import annotations

import cleanco
from cleanco.clean import get_unique_terms
from hypothesis import given, settings
from hypothesis import strategies as st

from dataflows.core.legal_forms import basename

FORMS = sorted(get_unique_terms())
WORDS = ["Acme", "Müller", "Société", "&", "Co", "de", "S.", "A.", "und", "Handels", "x", "", "-", ",", "."]
PART = st.one_of(st.sampled_from(FORMS), st.sampled_from(WORDS), st.text(max_size=6))
CASED = st.tuples(PART, st.sampled_from([str, str.upper, str.lower, str.title])).map(lambda p: p[1](p[0]))


@settings(max_examples=2000)
@given(st.lists(CASED, max_size=7), st.sampled_from([" ", "  ", ", ", " .", "\t"]))
def test_the_lookup_strips_exactly_what_cleanco_strips(parts: list[str], joiner: str) -> None:
    name = joiner.join(parts)
    assert basename(name) == cleanco.basename(name)
