-- People of the web surfaces (issue 7): accounts with a role and a hashed password, and their
-- sessions. What they do is not stored here: every action is an event in the archive.

CREATE TABLE web_users (
    username        text PRIMARY KEY CHECK (username ~ '^[A-Za-z0-9_.@-]{2,64}$'),
    role            text        NOT NULL CHECK (role IN ('viewer', 'operator', 'engineer', 'auditor', 'admin')),
    password_hash   text        NOT NULL,          -- scrypt$N$r$p$salt$hash (base64); never the password
    full_name       text        NOT NULL DEFAULT '',
    disabled        boolean     NOT NULL DEFAULT false,
    failed_logins   integer     NOT NULL DEFAULT 0, -- consecutive, reset by a successful login
    locked_until    timestamptz,
    created_at      timestamptz NOT NULL,
    password_set_at timestamptz NOT NULL
);

-- A session is known by the SHA-256 of its token (the cookie holds the token itself), so a
-- copy of this table does not let anyone in.
CREATE TABLE web_sessions (
    token_sha256  text PRIMARY KEY,
    username      text        NOT NULL REFERENCES web_users (username),
    created_at    timestamptz NOT NULL,
    last_seen_at  timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL,            -- the absolute limit; idle limit from last_seen_at
    ended_at      timestamptz                      -- logout, or the account disabled
);
CREATE INDEX web_sessions_user ON web_sessions (username);

-- The auditors' views look events up by id (provenance chains) and by type over a time range.
CREATE INDEX events_event_id ON events (event_id);
CREATE INDEX events_type_time ON events (type, event_time);
