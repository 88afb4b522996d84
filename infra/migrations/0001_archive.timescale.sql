-- lalin archive, TimescaleDB flavour: a hypertable (1-day chunks) with compression.
-- Not testable on the project's CI machines (TimescaleDB cannot be installed there); kept
-- small on purpose. Same columns and indexes as 0001_archive.sql.
CREATE TABLE events (
    event_time timestamptz NOT NULL, event_id uuid NOT NULL, stream text NOT NULL,
    position bigint NOT NULL, type text NOT NULL, schema_version integer NOT NULL,
    ingest_time timestamptz NOT NULL, archived_at timestamptz NOT NULL, source text NOT NULL,
    key text NOT NULL, seq bigint NOT NULL, topic text NOT NULL, kafka_partition integer NOT NULL,
    kafka_offset bigint NOT NULL, broker_epoch text NOT NULL, body text NOT NULL,
    prev_hash bytea NOT NULL, hash bytea NOT NULL,
    PRIMARY KEY (event_id, event_time)
);
SELECT create_hypertable('events', 'event_time', chunk_time_interval => interval '1 day');
CREATE INDEX events_stream_position ON events (stream, position);
CREATE INDEX events_key_time ON events (key, event_time);
ALTER TABLE events SET (timescaledb.compress, timescaledb.compress_segmentby = 'stream',
                        timescaledb.compress_orderby = 'position');
SELECT add_compression_policy('events', interval '7 days');

-- Dashboards read pre-aggregated counts, not raw events: events per 5 minutes per key and type.
CREATE MATERIALIZED VIEW events_5min WITH (timescaledb.continuous) AS
    SELECT time_bucket(interval '5 minutes', event_time) AS bucket, key, type, count(*) AS events
    FROM events GROUP BY bucket, key, type WITH NO DATA;
SELECT add_continuous_aggregate_policy('events_5min', start_offset => interval '1 day',
                                       end_offset => interval '5 minutes', schedule_interval => interval '5 minutes');
