"""The normalizers' caches never change an answer: in any order of calls, with values that are equal but
not the same (True and 1, 1 and "1") and with other free-mail lists, each answer is the uncached one."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from dataflows.core import identifiers
from dataflows.core.identifiers import check_tax_id, company_name_key, domain_key

TEXT = st.sampled_from(["ACME GmbH", "Acme AG", "  acme  gmbh ", "N/A", "Müller Ltd.", "Muller Limited", "x", ""])
TAX = st.one_of(st.sampled_from(["DE136695976", "DE 136 695 976", "136695976", "000000000", "12345", "1"]),
                st.sampled_from([1, True, 136695976, 0, False]))  # fmt: skip
COUNTRY = st.sampled_from(["DE", "de", "FR", "", None, "1"])
HOSTS = st.sampled_from(["acme.de", "https://www.acme.de/x", "info@gmail.com", "gmail.com", "localhost", "n/a"])
MAILS = st.sampled_from([frozenset(), frozenset({"gmail.com"}), frozenset({"acme.de"})])


@given(st.lists(st.tuples(TEXT, TAX, COUNTRY, HOSTS, MAILS), min_size=1, max_size=30))
def test_cached_normalizers_answer_as_the_uncached_ones(calls: list[tuple[str, object, object, str, frozenset[str]]]) -> None:
    for name, tax, country, host, mail in calls:
        assert company_name_key(name) == company_name_key.__wrapped__(name)
        assert check_tax_id(tax, country) == identifiers._check_tax_id(tax, country)
        assert domain_key(host, mail) == domain_key.__wrapped__(host, mail)


def test_unhashable_values_are_checked_uncached() -> None:
    assert check_tax_id(["DE136695976"], "DE") == identifiers._check_tax_id(["DE136695976"], "DE")
