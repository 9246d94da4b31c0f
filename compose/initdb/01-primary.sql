-- Runs once, on mysql-primary's first start (empty data directory), from
-- /docker-entrypoint-initdb.d. These statements are written to the binary log
-- with GTIDs, so the replicas receive the same schema and accounts when they
-- start replicating with SOURCE_AUTO_POSITION=1.
--
-- Development credentials only: change them for anything else (and in
-- compose/myrouter.toml, which myrouter reads).

-- Replication account used by the replicas (see 01-replica.sql).
CREATE USER 'repl'@'%' IDENTIFIED BY 'repl';
GRANT REPLICATION SLAVE ON *.* TO 'repl'@'%';

-- Application account: clients log in to myrouter as app/app, and myrouter
-- uses the same credentials towards the servers ([[mysql_users]] in
-- myrouter.toml has frontend and backend set).
CREATE DATABASE app;
CREATE USER 'app'@'%' IDENTIFIED BY 'app';
GRANT ALL PRIVILEGES ON app.* TO 'app'@'%';

-- Monitor account (mysql_variables.monitor_username / monitor_password):
-- connects, pings, reads @@read_only and SHOW REPLICA STATUS.
CREATE USER 'monitor'@'%' IDENTIFIED BY 'monitor';
GRANT USAGE, REPLICATION CLIENT ON *.* TO 'monitor'@'%';

CREATE TABLE app.greetings (
    id INT AUTO_INCREMENT PRIMARY KEY,
    message VARCHAR(100) NOT NULL
);
INSERT INTO app.greetings (message) VALUES ('hello from the primary');
