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
