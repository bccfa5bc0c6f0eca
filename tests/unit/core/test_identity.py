from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from dataflows.core.identity import IdentityResolver, rule_key
from dataflows.core.policy import MatchRule, Policy

POLICY = Policy()
RULES = {r.name: r for r in POLICY.match_rules}


def test_normalizers() -> None:
    assert rule_key(RULES["tax_id"], {"tax_id": "de 123-45"}) == ("DE12345",)
    assert rule_key(RULES["name_country"], {"legal_name": "Müller & Söhne GmbH", "country": "de"}) == ("muller sohne", "de")
    assert rule_key(RULES["name_country"], {"display_name": "Muller & Sohne", "country": "DE"}) == ("muller sohne", "de")
    assert rule_key(RULES["domain"], {"domain": "WWW.Acme.example."}) == ("acme.example",)
    assert rule_key(RULES["domain"], {"domain": "gmail.com"}) is None  # free mail never matches
    assert rule_key(RULES["tax_id"], {"tax_id": None}) is None
    assert rule_key(MatchRule(name="x", fields=["a", "b"]), {"a": "1"}) is None


def test_crosswalk_then_rules_and_sticky_links() -> None:
    ids = IdentityResolver(POLICY)
    crm = ids.resolve(("crm", "7"), {"display_name": "Acme", "country": "DE", "erp_customer_id": "42"})
    assert crm.created
    erp = ids.resolve(("erp", "42"), {"legal_name": "Totally Different", "country": "FR"})
    assert erp.golden_id == crm.golden_id and not erp.created and erp.joined_by is None  # pre-linked by crosswalk
    other = ids.resolve(("erp", "43"), {"legal_name": "Acme AG", "country": "DE"})
    assert other.golden_id == crm.golden_id and other.joined_by == "name_country"
    again = ids.resolve(("erp", "43"), {"legal_name": "Renamed", "country": "DE"})
    assert again.golden_id == crm.golden_id  # links are sticky
    assert ids.stats.created == 1


def test_merge_keeps_smallest_anchor_and_repoints_everything() -> None:
    ids = IdentityResolver(POLICY)
    a = ids.resolve(("erp", "9"), {"tax_id": "T1"}).golden_id
    b = ids.resolve(("crm", "3"), {"domain": "b.example"}).golden_id
    res = ids.resolve(("crm", "3"), {"domain": "b.example", "tax_id": "T1"})
    assert len(res.merges) == 1 and res.merges[0].survivor == b and res.merges[0].merged == a  # crm:3 < erp:9
    assert ids.golden_id(("erp", "9")) == b and set(ids.clusters) == {b}
    assert ids.resolve(("crm", "5"), {"tax_id": "t1"}).golden_id == b  # the loser's index keys now point at b


@given(st.permutations([("crm", "1", "T"), ("erp", "1", "T"), ("crm", "2", "T")]))
def test_same_entities_always_end_in_one_golden_customer(order) -> None:
    ids = IdentityResolver(POLICY)
    for system, ref, tax in order:
        ids.resolve((system, ref), {"tax_id": tax})
    assert len(ids.clusters) == 1
    assert ids.golden_id(("crm", "1")) == ids.golden_id(("erp", "1")) == ids.golden_id(("crm", "2"))


def test_a_key_indexed_before_a_merge_in_the_same_change_follows_the_survivor() -> None:
    """Found by hypothesis: crm:2 gains a name key and a tax key in one change; the tax key merges it into
    crm:1's customer. The name key must point at the survivor, not at the merged-away id."""
    ids = IdentityResolver(POLICY)
    first = ids.resolve(("crm", "1"), {"tax_id": "DE1"}).golden_id
    ids.resolve(("crm", "2"), {})
    ids.resolve(("crm", "2"), {"display_name": "Acme", "country": "FR", "tax_id": "DE 1"})
    assert set(ids.index.values()) == {first}
    assert ids.resolve(("crm", "3"), {"display_name": "Acme", "country": "FR"}).golden_id == first
