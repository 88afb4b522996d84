-- lalin archive, plain PostgreSQL flavour (native range partitions by day + BRIN).
-- The TimescaleDB flavour of this step is 0001_archive.timescale.sql.

-- Every event, as received (canonical JSON), hash-chained per stream. Append-only.
CREATE TABLE events (
    event_time     timestamptz NOT NULL,          -- when it happened (UTC)
    event_id       uuid        NOT NULL,
    stream         text        NOT NULL,          -- topic/key/source
    position       bigint      NOT NULL,          -- 1, 2, 3 ... within the stream
    type           text        NOT NULL,
    schema_version integer     NOT NULL,
    ingest_time    timestamptz NOT NULL,
    archived_at    timestamptz NOT NULL,
    source         text        NOT NULL,
    key            text        NOT NULL,
    seq            bigint      NOT NULL,          -- the source's sequence number
    topic          text        NOT NULL,
    kafka_partition integer    NOT NULL,
    kafka_offset   bigint      NOT NULL,
    broker_epoch   text        NOT NULL,
    body           text        NOT NULL,          -- canonical JSON: the hashed content
    prev_hash      bytea       NOT NULL,
    hash           bytea       NOT NULL,
    PRIMARY KEY (event_id, event_time)
) PARTITION BY RANGE (event_time);

CREATE INDEX events_stream_position ON events (stream, position);
CREATE INDEX events_key_time ON events (key, event_time);
CREATE INDEX events_time_brin ON events USING brin (event_time);
