-- The browser app's server side: the `files` listings table (collab/files, read-only for
-- clients through schema/files.toml, which adds the changefeed capture trigger) and
-- invitations by email, accepted when an account with that email is created.

CREATE TABLE files (
    project_id uuid NOT NULL REFERENCES projects (project_id) ON DELETE CASCADE,
    path       text NOT NULL,
    kind       text NOT NULL CHECK (kind IN ('file', 'dir')),
    size       bigint NOT NULL DEFAULT 0,
    modified   timestamptz NOT NULL,
    PRIMARY KEY (project_id, path)
);

CREATE TABLE invitations (
    project_id uuid NOT NULL REFERENCES projects (project_id) ON DELETE CASCADE,
    email      text NOT NULL CHECK (email = lower(email)),
    invited_by uuid REFERENCES accounts (account_id) ON DELETE SET NULL,
    created    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, email)
);
CREATE INDEX invitations_email ON invitations (email);

-- In the same transaction as the new account: it is a collaborator of every project it
-- was invited to from its first moment (and the membership reaches changefeeds as usual).
CREATE FUNCTION accept_invitations() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO project_users (project_id, account_id, role)
    SELECT i.project_id, NEW.account_id, 'collaborator'
    FROM invitations i JOIN projects p USING (project_id)
    WHERE i.email = lower(NEW.email) AND NOT p.deleted
    ON CONFLICT DO NOTHING;
    DELETE FROM invitations WHERE email = lower(NEW.email);
    RETURN NULL;
END $$;

-- Triggers fire in name order: this one sorts after `accounts_changes`, so the change log
-- holds the new account (and its name) before the memberships that name it.
CREATE TRIGGER accounts_changes_then_accept_invitations AFTER INSERT ON accounts
    FOR EACH ROW EXECUTE FUNCTION accept_invitations();
