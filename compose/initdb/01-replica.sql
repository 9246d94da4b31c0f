-- Runs once, on each replica's first start (empty data directory), from
-- /docker-entrypoint-initdb.d, after mysql-primary is healthy (depends_on).
-- The entrypoint runs it in a temporary server; the replication settings are
-- stored in the data directory and replication resumes when the real server
-- starts. With GTID auto-positioning the replica fetches everything the
-- primary logged, including the accounts of 01-primary.sql.

CHANGE REPLICATION SOURCE TO
    SOURCE_HOST = 'mysql-primary',
    SOURCE_PORT = 3306,
    SOURCE_USER = 'repl',
    SOURCE_PASSWORD = 'repl',
    SOURCE_AUTO_POSITION = 1,
    -- 'repl' uses caching_sha2_password; without TLS the replica needs the
    -- primary's RSA public key to send the password.
    GET_SOURCE_PUBLIC_KEY = 1,
    SOURCE_CONNECT_RETRY = 5;
START REPLICA;

-- read_only is set on the command line; super_read_only also stops accounts
-- with SUPER from writing. It is set last (and persisted to mysqld-auto.cnf)
-- because it would also block the entrypoint's own setup statements.
SET PERSIST super_read_only = ON;
