-- Accounts, sessions, API keys, sign-in attempts, projects and their members.

CREATE TABLE accounts (
    account_id    uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email         text NOT NULL,
    name          text NOT NULL DEFAULT '',
    password_hash text NOT NULL,
    is_admin      boolean NOT NULL DEFAULT false,
    created       timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX accounts_email_key ON accounts (lower(email));

-- A session is a random token; the cookie carries it signed, the table only its hash.
CREATE TABLE sessions (
    token_hash  bytea PRIMARY KEY,
    account_id  uuid NOT NULL REFERENCES accounts ON DELETE CASCADE,
    created     timestamptz NOT NULL DEFAULT now(),
    expires     timestamptz NOT NULL
);
CREATE INDEX sessions_account_idx ON sessions (account_id);

CREATE TABLE api_keys (
    key_id      uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    account_id  uuid NOT NULL REFERENCES accounts ON DELETE CASCADE,
    key_hash    bytea NOT NULL UNIQUE,
    prefix      text NOT NULL,
    name        text NOT NULL DEFAULT '',
    created     timestamptz NOT NULL DEFAULT now(),
    last_used   timestamptz,
    revoked     timestamptz
);
CREATE INDEX api_keys_account_idx ON api_keys (account_id);

-- Failed sign-ins, counted per account and per client address for rate limiting.
CREATE TABLE login_failures (
    email    text NOT NULL,
    address  text NOT NULL,
    at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX login_failures_email_idx ON login_failures (lower(email), at);
CREATE INDEX login_failures_address_idx ON login_failures (address, at);

CREATE TABLE projects (
    project_id   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    title        text NOT NULL DEFAULT '',
    description  text NOT NULL DEFAULT '',
    created      timestamptz NOT NULL DEFAULT now(),
    last_edited  timestamptz NOT NULL DEFAULT now(),
    state        text NOT NULL DEFAULT 'stopped',
    deleted      boolean NOT NULL DEFAULT false
);

CREATE TABLE project_users (
    project_id  uuid NOT NULL REFERENCES projects ON DELETE CASCADE,
    account_id  uuid NOT NULL REFERENCES accounts ON DELETE CASCADE,
    role        text NOT NULL CHECK (role IN ('owner', 'collaborator')),
    added       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, account_id)
);
CREATE INDEX project_users_account_idx ON project_users (account_id);
