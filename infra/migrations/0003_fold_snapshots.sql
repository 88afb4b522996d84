-- The stream processors' state (issue 5): each task's folded state stored together with the
-- input offsets it covers, in one transaction, so a restarted or rebalanced worker resumes
-- exactly (no loss, no double counting) on any broker. A task is one partition index of the
-- co-partitioned input topics; offsets are per broker epoch (meaningless in another one).

CREATE TABLE fold_snapshots (
    group_id      text        NOT NULL,        -- the processor (consumer group), e.g. lalin-fold
    task          integer     NOT NULL,        -- the partition index shared by its input topics
    broker_epoch  text        NOT NULL,
    offsets       jsonb       NOT NULL,        -- {"topic": next offset to read, ...}
    state         bytea       NOT NULL,        -- msgpack of the task's state
    folded        bigint      NOT NULL,        -- events folded into this state since the task began
    emitted       bigint      NOT NULL,        -- events the task emitted (summaries, commands)
    updated_at    timestamptz NOT NULL,
    PRIMARY KEY (group_id, task)
);

-- Commands handed to a device driver, at most once each (the executor's guard against a
-- re-delivered lalin.command record after a restart); outcome null while under way.
CREATE TABLE command_executions (
    command_id    uuid PRIMARY KEY,
    target        text        NOT NULL,
    issued_at     timestamptz NOT NULL,        -- the command's event time (the decision instant)
    received_at   timestamptz NOT NULL,
    outcome       text,                        -- acknowledged, rejected, timed_out (null: under way)
    detail        text        NOT NULL DEFAULT '',
    finished_at   timestamptz
);
