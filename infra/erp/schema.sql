-- ERP demo schema (PostgreSQL). Loaded once into the local `erp` database by `tidemark up`,
-- and by docker-compose into the production-shaped stack.
CREATE SCHEMA IF NOT EXISTS erp;

CREATE TABLE erp.customers (
    id             bigserial PRIMARY KEY,
    legal_name     text        NOT NULL,
    tax_id         text,
    country        char(2)     NOT NULL,
    payment_terms  text        NOT NULL DEFAULT 'NET30',
    credit_limit   numeric(14, 2) NOT NULL DEFAULT 0,
    credit_status  text        NOT NULL DEFAULT 'ok' CHECK (credit_status IN ('ok', 'hold')),
    status         text        NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended', 'closed')),
    notes          text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE erp.billing_accounts (
    id               bigserial PRIMARY KEY,
    customer_id      bigint      NOT NULL REFERENCES erp.customers (id),
    currency         char(3)     NOT NULL,
    approval_status  text        NOT NULL DEFAULT 'pending'
                     CHECK (approval_status IN ('pending', 'approved', 'rejected')),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE erp.subscriptions (
    id            bigserial PRIMARY KEY,
    customer_id   bigint      NOT NULL REFERENCES erp.customers (id),
    plan          text        NOT NULL,
    seats         integer     NOT NULL CHECK (seats > 0),
    status        text        NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'active', 'cancelled', 'suspended')),
    period_start  date,
    period_end    date,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE erp.invoices (
    id           bigserial PRIMARY KEY,
    customer_id  bigint         NOT NULL REFERENCES erp.customers (id),
    amount       numeric(14, 2) NOT NULL,
    currency     char(3)        NOT NULL,
    due_date     date           NOT NULL,
    status       text           NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'paid', 'overdue', 'void')),
    issued_at    timestamptz    NOT NULL DEFAULT now()
);

-- A full `before` image on update and delete, so changes can be diffed per field.
ALTER TABLE erp.customers REPLICA IDENTITY FULL;
ALTER TABLE erp.billing_accounts REPLICA IDENTITY FULL;
ALTER TABLE erp.subscriptions REPLICA IDENTITY FULL;
ALTER TABLE erp.invoices REPLICA IDENTITY FULL;

CREATE PUBLICATION tidemark_erp FOR TABLE erp.customers, erp.billing_accounts, erp.subscriptions, erp.invoices;
