-- Stream heads, consumer offsets (kept with the archive, in the same transactions),
-- dead letters, checkpoints and broker epochs.

CREATE TABLE stream_heads (
    stream        text PRIMARY KEY,
    position      bigint      NOT NULL,
    hash          bytea       NOT NULL,
    last_seq      bigint      NOT NULL,            -- highest sequence number archived
    open_gaps     jsonb       NOT NULL DEFAULT '[]', -- [[from, to], ...] numbers still missing
    updated_at    timestamptz NOT NULL
);

CREATE TABLE consumer_offsets (
    group_id      text    NOT NULL,
    topic         text    NOT NULL,
    kafka_partition integer NOT NULL,
    broker_epoch  text    NOT NULL,            -- offsets are meaningless in another epoch
    next_offset   bigint  NOT NULL,
    updated_at    timestamptz NOT NULL,
    PRIMARY KEY (group_id, topic, kafka_partition)
);

CREATE TABLE dead_letters (
    id            bigserial PRIMARY KEY,
    received_at   timestamptz NOT NULL,
    topic         text    NOT NULL,
    kafka_partition integer NOT NULL,
    kafka_offset  bigint  NOT NULL,
    broker_epoch  text    NOT NULL,
    record_key    bytea,
    raw           bytea   NOT NULL,
    reason        text    NOT NULL,
    detail        text    NOT NULL,
    UNIQUE (broker_epoch, topic, kafka_partition, kafka_offset)
);
CREATE INDEX dead_letters_received ON dead_letters (received_at);

CREATE TABLE chain_checkpoints (
    id            bigserial PRIMARY KEY,
    created_at    timestamptz NOT NULL,
    stream        text    NOT NULL,
    position      bigint  NOT NULL,
    hash          bytea   NOT NULL,
    event_time    timestamptz NOT NULL         -- event time of the record at that position
);
CREATE INDEX chain_checkpoints_stream ON chain_checkpoints (stream, position);

CREATE TABLE archive_checkpoints (
    id            bigserial PRIMARY KEY,
    created_at    timestamptz NOT NULL,
    streams       integer NOT NULL,
    records       bigint  NOT NULL,
    root_hash     bytea   NOT NULL             -- SHA-256 over the sorted stream heads
);

CREATE TABLE broker_epochs (
    epoch             text PRIMARY KEY,
    bootstrap         text        NOT NULL,
    first_seen_at     timestamptz NOT NULL,
    last_confirmed_at timestamptz NOT NULL,
    ended_at          timestamptz
);

-- Append-only: the archive refuses UPDATE and DELETE (an auditor can still see tampering
-- done around this, e.g. by a superuser disabling triggers: the hash chain catches it).
CREATE FUNCTION lalin_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'lalin archive table % is append-only (% refused)', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION lalin_append_only();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION lalin_append_only();
CREATE TRIGGER dead_letters_append_only BEFORE UPDATE OR DELETE ON dead_letters
    FOR EACH ROW EXECUTE FUNCTION lalin_append_only();
CREATE TRIGGER chain_checkpoints_append_only BEFORE UPDATE OR DELETE ON chain_checkpoints
    FOR EACH ROW EXECUTE FUNCTION lalin_append_only();

-- A readable view of events with the payload as jsonb (for audit queries; not the hot path).
CREATE VIEW events_view AS
    SELECT event_time, event_id, type, source, key, seq, stream, position,
           (body::jsonb) -> 'payload' AS payload, ingest_time, archived_at, topic, broker_epoch
    FROM events;
