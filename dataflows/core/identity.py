"""Identity resolution: link source customers (a CRM account, an ERP customer) into one golden customer.

Explicit crosswalks first (a CRM account naming its ERP customer), then the deterministic match rules of
the policy, in order. A source customer joins an existing golden customer when it matches one, so a
duplicate golden customer is never created for a known entity; when a change proves two golden
customers are one, they merge: the one whose anchor (smallest source id) sorts first survives. Links are
sticky: a later change of a matching value does not split a golden customer.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from dataflows.core.policy import MatchRule, Normalizer, Policy

NAMESPACE = uuid.UUID("0b7a4a4e-2f0e-4b7e-8b1a-2d6c3f9e5a11")
Ref = tuple[str, str]  # (system, source-local customer id)
IndexKey = tuple[str, tuple[str, ...]]  # (rule, normalized values)

_LEGAL_FORMS = re.compile(
    r"\b(gmbh|ag|kg|ltd|limited|inc|incorporated|llc|plc|sa|sarl|sas|bv|nv|oy|ab|as|spa|srl|co|corp|corporation|company)\b"
)


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().casefold()


def _company_name(text: str) -> str:
    words = re.sub(r"[^a-z0-9]+", " ", _fold(text))
    return " ".join(_LEGAL_FORMS.sub(" ", words).split())


def _domain(text: str) -> str:
    host = _fold(text).strip().rpartition("@")[2]
    return host.removeprefix("www.").strip(".")


NORMALIZERS: dict[Normalizer, Callable[[str], str]] = {
    "exact": lambda s: s,
    "casefold": lambda s: " ".join(_fold(s).split()),
    "alnum": lambda s: re.sub(r"[^A-Z0-9]", "", _fold(s).upper()),
    "company_name": _company_name,
    "domain": _domain,
}


def rule_key(rule: MatchRule, values: Mapping[str, Any]) -> tuple[str, ...] | None:
    """The normalized key of `values` under `rule`, or None when a field is empty or excluded."""
    normalize = NORMALIZERS[rule.normalize]
    parts = []
    for spec in rule.fields:
        raw = next((values[f] for f in spec.split("|") if values.get(f) not in (None, "")), None)
        if raw is None:
            return None
        part = normalize(str(raw))
        if not part or part in rule.exclude:
            return None
        parts.append(part)
    return tuple(parts)


def golden_id_for(ref: Ref) -> str:
    return str(uuid.uuid5(NAMESPACE, f"{ref[0]}:{ref[1]}"))


def _anchor(ref: Ref) -> tuple[str, int, str]:
    return (ref[0], len(ref[1]), ref[1])  # numeric ids in numeric order


@dataclass
class Cluster:
    golden_id: str
    anchor: tuple[str, int, str]
    refs: set[Ref] = field(default_factory=set)
    rules: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class Merge:
    merged: str
    survivor: str
    rule: str


@dataclass(frozen=True)
class Resolution:
    golden_id: str
    created: bool = False
    joined_by: str | None = None  # rule that linked a new source customer to an existing golden one
    merges: tuple[Merge, ...] = ()


@dataclass
class IdentityStats:
    matches: dict[str, int] = field(default_factory=dict)
    created: int = 0
    merged: int = 0


class IdentityResolver:
    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.stats = IdentityStats()
        self.ref_cluster: dict[Ref, str] = {}
        self.clusters: dict[str, Cluster] = {}
        self.index: dict[IndexKey, str] = {}
        self.ref_keys: dict[Ref, set[IndexKey]] = {}
        # A source customer's last match values (as a hash): unchanged values need no key work.
        self._ref_sig: dict[Ref, int] = {}
        self._fields = sorted({f for r in policy.match_rules for spec in r.fields for f in spec.split("|")}
                              | {c.field for c in policy.crosswalks})  # fmt: skip

    def match_fields(self) -> list[str]:
        return self._fields

    def golden_id(self, ref: Ref) -> str | None:
        return self.ref_cluster.get(ref)

    def resolve(self, ref: Ref, values: Mapping[str, Any] | None = None) -> Resolution:
        """The golden customer of source customer `ref`, given its current match values (if any)."""
        if values is not None and ref in self.ref_cluster:
            signature = hash(tuple(sorted(values.items(), key=lambda kv: kv[0])))
            if self._ref_sig.get(ref) == signature:
                return Resolution(self.ref_cluster[ref])
            self._ref_sig[ref] = signature
        keys = self._keys(values) if values else set()
        links = self._crosswalk_targets(values) if values else []
        cid = self.ref_cluster.get(ref)
        created, joined_by = False, None
        if cid is None:
            cid, joined_by = self._find_existing(keys, links)
            if cid is None:
                cid = self._new_cluster(ref)
                created = True
            else:
                self._add_ref(cid, ref)
                self.clusters[cid].rules.add(joined_by or "")
                self._count(joined_by)
        merges: list[Merge] = []
        for target, rule in links:
            other = self.ref_cluster.get(target)
            if other is None:
                self._add_ref(cid, target)  # the named customer will join when it first appears
            elif other != cid:
                merge = self._merge(cid, other, rule)
                merges.append(merge)
                cid = merge.survivor
        known = self.ref_keys.setdefault(ref, set()) if values is not None else set()
        # Sorted, not set order: set order follows PYTHONHASHSEED, and merges must not depend on it.
        for key in sorted(keys - known):
            known.add(key)  # before any merge below, so the merge repoints it too
            other = self.index.get(key)
            if other is None:
                self.index[key] = cid
            elif other != cid:
                merge = self._merge(cid, other, key[0])
                merges.append(merge)
                cid = merge.survivor
        return Resolution(cid, created, joined_by, tuple(merges))

    def _keys(self, values: Mapping[str, Any]) -> set[IndexKey]:
        keys = set()
        for rule in self.policy.match_rules:
            key = rule_key(rule, values)
            if key is not None:
                keys.add((rule.name, key))
        return keys

    def _crosswalk_targets(self, values: Mapping[str, Any]) -> list[tuple[Ref, str]]:
        return [((c.system, str(values[c.field])), c.name) for c in self.policy.crosswalks
                if values.get(c.field) not in (None, "")]  # fmt: skip

    def _find_existing(self, keys: set[IndexKey], links: list[tuple[Ref, str]]) -> tuple[str | None, str | None]:
        for target, rule in links:
            if target in self.ref_cluster:
                return self.ref_cluster[target], rule
        for rule in self.policy.match_rules:  # rule order decides which match is recorded
            for key in sorted(k for k in keys if k[0] == rule.name):
                if key in self.index:
                    return self.index[key], rule.name
        return None, None

    def _new_cluster(self, ref: Ref) -> str:
        cid = golden_id_for(ref)
        self.clusters[cid] = Cluster(cid, _anchor(ref))
        self._add_ref(cid, ref)
        self.stats.created += 1
        return cid

    def _add_ref(self, cid: str, ref: Ref) -> None:
        self.clusters[cid].refs.add(ref)
        self.ref_cluster[ref] = cid
        self.clusters[cid].anchor = min(self.clusters[cid].anchor, _anchor(ref))

    def _merge(self, a: str, b: str, rule: str) -> Merge:
        ca, cb = self.clusters[a], self.clusters[b]
        survivor, loser = (ca, cb) if (ca.anchor, ca.golden_id) <= (cb.anchor, cb.golden_id) else (cb, ca)
        for ref in loser.refs:
            self.ref_cluster[ref] = survivor.golden_id
            for key in self.ref_keys.get(ref, ()):
                if self.index.get(key) == loser.golden_id:
                    self.index[key] = survivor.golden_id
        survivor.refs |= loser.refs
        survivor.rules |= loser.rules | {rule}
        survivor.anchor = min(survivor.anchor, loser.anchor)
        del self.clusters[loser.golden_id]
        self.stats.merged += 1
        self._count(rule)
        return Merge(loser.golden_id, survivor.golden_id, rule)

    def _count(self, rule: str | None) -> None:
        if rule:
            self.stats.matches[rule] = self.stats.matches.get(rule, 0) + 1
