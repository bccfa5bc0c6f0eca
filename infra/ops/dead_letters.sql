-- Every dead letter, durably, in the operational PostgreSQL database (the broker may lose its DLQ topic).
-- One row per dead_letter_id (content-derived: the same bad record written again is the same row).
-- `state` is the exception's life: open -> replayed (sent again through the pipeline) -> open again if it
-- fails again, or resolved / discarded by a person. Created by the dataflow on start.
CREATE TABLE IF NOT EXISTS dead_letters (
    dead_letter_id   uuid PRIMARY KEY,
    state            text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'replayed', 'resolved', 'discarded')),
    stage            text NOT NULL,
    error_class      text NOT NULL,
    reason           text NOT NULL,
    source           text,
    topic            text NOT NULL,
    kafka_partition  integer NOT NULL,
    kafka_offset     bigint NOT NULL,
    record_key       bytea,
    record_value     bytea,
    failures         integer NOT NULL DEFAULT 1,
    first_failed_at  timestamptz NOT NULL,
    last_failed_at   timestamptz NOT NULL,
    state_changed_at timestamptz NOT NULL,
    replayed_at      timestamptz,
    resolved_at      timestamptz,
    discarded_at     timestamptz,
    schema_version   integer NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS dead_letters_state_failed ON dead_letters (state, last_failed_at);
