"""Seed rows the integration tests load before their workloads."""

from __future__ import annotations

from dataflows.stack.local import LocalStack


def seed_linked_customers(stack: LocalStack, base: int, customers: int, label: str, tax_prefix: str) -> None:
    """ERP customers with ids from `base` up, each with a CRM account of the same id that names it."""
    with stack.erp_admin() as db, db.cursor() as cur:
        cur.executemany("INSERT INTO erp.customers (id, legal_name, tax_id, country, credit_limit) "
                        "VALUES (%s, %s, %s, 'DE', 1000)",
                        [(base + i, f"{label} {i} GmbH", f"{tax_prefix}{i}") for i in range(customers)])  # fmt: skip
    crm = stack.crm_admin()
    try:
        with crm.cursor() as cur:
            cur.executemany("INSERT INTO accounts (id, name, tax_id, country, erp_customer_id) VALUES (%s, %s, %s, 'DE', %s)",
                            [(base + i, f"{label} {i}", f"{tax_prefix}{i}", base + i) for i in range(customers)])  # fmt: skip
    finally:
        crm.close()
