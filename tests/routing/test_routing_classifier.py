"""Table-driven classification tests: real-world MySQL statements -> kind, tables, flags.

Every row asserts the exact kind, the exact set of tables and the exact set
of flags (so a flag that appears where it should not fails too).
"""

from __future__ import annotations

import pytest

from myrouter.routing.classifier import (
    Classifier,
    SetVariable,
    StatementFlag,
    StatementKind,
    classify_statement,
)

_IDS: dict[str, int] = {}


def case(sql: str, kind: str, tables=(), flags=(), *, unparsable: bool = False, id: str | None = None):
    name = id or " ".join(sql.split())[:60]
    n = _IDS.get(name, 0)
    _IDS[name] = n + 1
    if n:
        name = f"{name} #{n + 1}"
    return pytest.param(sql, kind, frozenset(tables), frozenset(flags), unparsable, id=name)


SYSBENCH = [
    case("SELECT c FROM sbtest1 WHERE id=4711", "read", {"sbtest1"}),
    case("SELECT c FROM sbtest1 WHERE id BETWEEN 4711 AND 4810", "read", {"sbtest1"}),
    case("SELECT SUM(k) FROM sbtest1 WHERE id BETWEEN 4711 AND 4810", "read", {"sbtest1"}),
    case("SELECT c FROM sbtest1 WHERE id BETWEEN 4711 AND 4810 ORDER BY c", "read", {"sbtest1"}),
    case("SELECT DISTINCT c FROM sbtest1 WHERE id BETWEEN 4711 AND 4810 ORDER BY c", "read", {"sbtest1"}),
    case("UPDATE sbtest1 SET k=k+1 WHERE id=4711", "write", {"sbtest1"}),
    case("UPDATE sbtest1 SET c='83868641912-28773972837-60736120486' WHERE id=4711", "write", {"sbtest1"}),
    case("DELETE FROM sbtest1 WHERE id=4711", "write", {"sbtest1"}),
    case(
        "INSERT INTO sbtest1 (id, k, c, pad) VALUES (4711, 4992, '83868641912-28773972837', '67847967377-48000963322')",
        "write", {"sbtest1"},
    ),
    case("BEGIN", "transaction", (), {"implicit_commit"}),
    case("COMMIT", "transaction"),
    case("SELECT c FROM sbtest1 WHERE id=?", "read", {"sbtest1"}),
    case("SELECT id FROM sbtest3 WHERE id IN (1, 2, 3) FOR UPDATE", "locking_read", {"sbtest3"}, {"locking"}),
    case(
        "CREATE TABLE sbtest1 (id INTEGER NOT NULL AUTO_INCREMENT, k INTEGER DEFAULT '0' NOT NULL, "
        "c CHAR(120) DEFAULT '' NOT NULL, pad CHAR(60) DEFAULT '' NOT NULL, PRIMARY KEY (id)) ENGINE = innodb",
        "ddl", {"sbtest1"}, {"implicit_commit"},
    ),
    case("CREATE INDEX k_1 ON sbtest1(k)", "ddl", {"sbtest1"}, {"implicit_commit"}),
    case("DROP TABLE IF EXISTS sbtest1", "ddl", {"sbtest1"}, {"implicit_commit"}),
]

DJANGO = [
    case(
        "SELECT `auth_user`.`id`, `auth_user`.`password`, `auth_user`.`last_login` FROM `auth_user` "
        "WHERE `auth_user`.`username` = 'admin' LIMIT 21",
        "read", {"auth_user"},
    ),
    case("SELECT (1) AS `a` FROM `django_session` WHERE `django_session`.`session_key` = 'x' LIMIT 1",
         "read", {"django_session"}),
    case(
        "INSERT INTO `django_session` (`session_key`, `session_data`, `expire_date`) "
        "VALUES ('k', 'd', '2024-01-01 00:00:00')",
        "write", {"django_session"},
    ),
    case("UPDATE `auth_user` SET `last_login` = '2024-01-01 00:00:00.000000' WHERE `auth_user`.`id` = 1",
         "write", {"auth_user"}),
    case("DELETE FROM `django_session` WHERE `django_session`.`session_key` IN ('a', 'b')",
         "write", {"django_session"}),
    case(
        "SELECT `blog_entry`.`id`, `blog_blog`.`name` FROM `blog_entry` INNER JOIN `blog_blog` "
        "ON (`blog_entry`.`blog_id` = `blog_blog`.`id`) WHERE `blog_blog`.`name` LIKE 'Beatles%' "
        "ORDER BY `blog_entry`.`pub_date` DESC LIMIT 10 OFFSET 20",
        "read", {"blog_entry", "blog_blog"},
    ),
    case("SELECT COUNT(*) AS `__count` FROM `blog_entry`", "read", {"blog_entry"}),
    case("SELECT `shop_order`.`id` FROM `shop_order` WHERE `shop_order`.`id` = 5 FOR UPDATE",
         "locking_read", {"shop_order"}, {"locking"}),
    case("SELECT `jobs`.`id` FROM `jobs` WHERE `jobs`.`state` = 'new' LIMIT 1 FOR UPDATE SKIP LOCKED",
         "locking_read", {"jobs"}, {"locking"}),
    case("SELECT `jobs`.`id` FROM `jobs` WHERE `jobs`.`id` = 3 FOR UPDATE NOWAIT",
         "locking_read", {"jobs"}, {"locking"}),
    case("SAVEPOINT `s140234_x1`", "transaction", (), {"savepoint"}),
    case("RELEASE SAVEPOINT `s140234_x1`", "transaction", (), {"savepoint"}),
    case("ROLLBACK TO SAVEPOINT `s140234_x1`", "transaction", (), {"savepoint"}),
    case("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED", "session", (), {"set_session_variable"}),
    case("SELECT `django_migrations`.`app`, `django_migrations`.`name` FROM `django_migrations`",
         "read", {"django_migrations"}),
    case("ALTER TABLE `blog_entry` ADD COLUMN `rating` integer DEFAULT 0 NOT NULL",
         "ddl", {"blog_entry"}, {"implicit_commit"}),
    case(
        "INSERT INTO `stock` (`sku`, `qty`) VALUES ('a', 1), ('b', 2) AS `new` "
        "ON DUPLICATE KEY UPDATE `qty` = `new`.`qty`",
        "write", {"stock"},
    ),
    case(
        "SELECT `x`.`id` FROM `x` WHERE `x`.`id` IN (SELECT U0.`id` FROM `y` U0 WHERE U0.`flag` = 1)",
        "read", {"x", "y"},
    ),
]

SQLALCHEMY = [
    case("SELECT users.id AS users_id, users.name AS users_name FROM users WHERE users.id = 5",
         "read", {"users"}),
    case(
        "SELECT users.id, addresses.email FROM users LEFT OUTER JOIN addresses "
        "ON users.id = addresses.user_id LIMIT 10, 20",
        "read", {"users", "addresses"},
    ),
    case("SELECT anon_1.users_id FROM (SELECT users.id AS users_id FROM users LIMIT 5) AS anon_1",
         "read", {"users"}),
    case("INSERT INTO users (name, fullname) VALUES ('a', 'b'), ('c', 'd')", "write", {"users"}),
    case("SELECT DATABASE()", "read"),
    case("SHOW VARIABLES LIKE 'sql_mode'", "utility"),
    case("SELECT CAST('test plain returns' AS CHAR(60)) AS anon_1", "read"),
    case("ROLLBACK", "transaction"),
    case("SELECT @@lower_case_table_names", "read"),
]

HIBERNATE = [
    case("select user0_.id as id1_0_, user0_.name as name2_0_ from users user0_ where user0_.id=5",
         "read", {"users"}),
    case(
        "select order0_.id as id1_1_ from orders order0_ inner join customers customer1_ "
        "on order0_.customer_id=customer1_.id where customer1_.id=3 limit 10",
        "read", {"orders", "customers"},
    ),
    case("insert into orders (customer_id, total, id) values (3, 10.5, 7)", "write", {"orders"}),
    case("update orders set total=11.0, version=2 where id=7 and version=1", "write", {"orders"}),
    case("delete from orders where id=7", "write", {"orders"}),
    case("select next_val as id_val from hibernate_sequence for update",
         "locking_read", {"hibernate_sequence"}, {"locking"}),
    case("update hibernate_sequence set next_val= 5 where next_val=4", "write", {"hibernate_sequence"}),
    case("select o.id from orders o where o.id = 1 for update of o", "locking_read", {"orders"}, {"locking"}),
    case("select count(*) as col_0_0_ from orders order0_ where order0_.status='NEW'", "read", {"orders"}),
]

WORDPRESS = [
    case("SELECT option_name, option_value FROM wp_options WHERE autoload = 'yes'", "read", {"wp_options"}),
    case("SELECT option_value FROM wp_options WHERE option_name = 'siteurl' LIMIT 1", "read", {"wp_options"}),
    case(
        "SELECT SQL_CALC_FOUND_ROWS  wp_posts.ID FROM wp_posts  WHERE 1=1  AND wp_posts.post_type = 'post' "
        "AND ((wp_posts.post_status = 'publish'))  ORDER BY wp_posts.post_date DESC LIMIT 0, 10",
        "read", {"wp_posts"}, {"sql_calc_found_rows"},
    ),
    case("SELECT FOUND_ROWS()", "read", (), {"found_rows"}),
    case(
        "SELECT wp_posts.* FROM wp_posts  LEFT JOIN wp_term_relationships ON "
        "(wp_posts.ID = wp_term_relationships.object_id) WHERE 1=1  AND "
        "( wp_term_relationships.term_taxonomy_id IN (2) ) GROUP BY wp_posts.ID",
        "read", {"wp_posts", "wp_term_relationships"},
    ),
    case(
        "INSERT INTO `wp_options` (`option_name`, `option_value`, `autoload`) VALUES ('_transient_x', 'y', 'no') "
        "ON DUPLICATE KEY UPDATE `option_name` = VALUES(`option_name`), `option_value` = VALUES(`option_value`)",
        "write", {"wp_options"},
    ),
    case("UPDATE `wp_options` SET `option_value` = '1' WHERE `option_name` = 'cron'", "write", {"wp_options"}),
    case(
        "SELECT  t.*, tt.* FROM wp_terms AS t  INNER JOIN wp_term_taxonomy AS tt ON t.term_id = tt.term_id "
        "WHERE tt.taxonomy IN ('category') ORDER BY t.name ASC",
        "read", {"wp_terms", "wp_term_taxonomy"},
    ),
    case("SHOW FULL COLUMNS FROM `wp_options`", "utility", {"wp_options"}),
    case("SELECT GET_LOCK('wp_cron_lock', 0)", "read", (), {"get_lock"}),
    case(
        "DELETE a, b FROM wp_options a, wp_options b WHERE a.option_name LIKE '\\_transient\\_%' "
        "AND a.option_name NOT LIKE '\\_transient\\_timeout\\_%' AND b.option_name = CONCAT('_transient_timeout_', "
        "SUBSTRING(a.option_name, 12)) AND b.option_value < 1700000000",
        "write", {"wp_options"},
    ),
    case("SET NAMES utf8mb4", "session", (), {"set_session_variable"}),
    case("SET NAMES 'utf8mb4' COLLATE 'utf8mb4_unicode_520_ci'", "session", (), {"set_session_variable"}),
]

CTE_AND_WINDOWS = [
    case(
        "WITH recent AS (SELECT id, customer_id FROM orders WHERE created > NOW() - INTERVAL 1 DAY) "
        "SELECT c.name FROM recent JOIN customers c ON c.id = recent.customer_id",
        "read", {"orders", "customers"},
    ),
    case("WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < 10) SELECT n FROM seq",
         "read"),
    case("WITH t AS (SELECT id FROM stale) UPDATE orders JOIN t ON orders.id = t.id SET orders.flag = 1",
         "write", {"stale", "orders"}),
    case("WITH t AS (SELECT id FROM stale) DELETE FROM orders WHERE id IN (SELECT id FROM t)",
         "write", {"stale", "orders"}),
    case("SELECT id, ROW_NUMBER() OVER (PARTITION BY customer_id ORDER BY created DESC) AS rn FROM orders",
         "read", {"orders"}),
    case("SELECT id, SUM(total) OVER w FROM orders WINDOW w AS (ORDER BY created)", "read", {"orders"}),
    case("SELECT customer_id, RANK() OVER (ORDER BY SUM(total) DESC) FROM orders GROUP BY customer_id",
         "read", {"orders"}),
    case("WITH c AS (SELECT id FROM t) SELECT id FROM c FOR UPDATE", "locking_read", {"t"}, {"locking"}),
]

HINTS_AND_COMMENTS = [
    case("SELECT /*+ MAX_EXECUTION_TIME(1000) */ * FROM t1", "read", {"t1"}),
    case("SELECT /*+ BKA(t1) NO_BKA(t2) */ * FROM t1 INNER JOIN t2 ON t1.a = t2.a", "read", {"t1", "t2"}),
    case("UPDATE /*+ NO_MERGE(t) */ t SET a = 1", "write", {"t"}),
    case("INSERT /*+ SET_VAR(foreign_key_checks=OFF) */ INTO t VALUES (1)", "write", {"t"}),
    case("/* controller:users,action:show */ SELECT * FROM users WHERE id = 1", "read", {"users"}),
    case("SELECT * FROM users /* trailing comment */ WHERE id = 1", "read", {"users"}),
    case("SELECT * FROM users -- FOR UPDATE\n WHERE id = 1", "read", {"users"}),
    case("SELECT * FROM users # FOR UPDATE\n WHERE id = 1", "read", {"users"}),
    case("-- leading line comment\nDELETE FROM t WHERE id = 1", "write", {"t"}),
    case("SELECT 'FOR UPDATE', 'GET_LOCK(1)', \"@x\" FROM t", "read", {"t"}),
    case("SELECT `get_lock`, `sleep` FROM t", "read", {"t"}),
    case("SELECT * FROM t WHERE note = 'it''s' AND x = 'a\\'b'", "read", {"t"}),
    case("SELECT * FROM users WHERE email = 'a@b.c'", "read", {"users"}),
]

EXECUTABLE_COMMENTS = [
    case("/*!40101 SET NAMES utf8 */", "session", (), {"set_session_variable"}),
    case("/*!40103 SET TIME_ZONE='+00:00' */", "session", (), {"set_session_variable"}),
    case(
        "/*!40014 SET @OLD_UNIQUE_CHECKS=@@UNIQUE_CHECKS, UNIQUE_CHECKS=0 */",
        "session", (), {"user_variable_assign", "set_session_variable"},
    ),
    case("/*!40000 ALTER TABLE `t` DISABLE KEYS */", "ddl", {"t"}, {"implicit_commit"}),
    case("SELECT /*!40001 SQL_NO_CACHE */ * FROM `t`", "read", {"t"}),
    case("/*M!100100 SET @x=1 */", "session", (), {"user_variable_assign"}),
    case(
        "/*!50001 CREATE ALGORITHM=UNDEFINED */ /*!50013 DEFINER=`root`@`localhost` SQL SECURITY DEFINER */ "
        "/*!50001 VIEW `v` AS select 1 AS `a` */",
        "ddl", {"v"}, {"implicit_commit"},
    ),
]

MULTI_STATEMENTS = [
    case("SELECT 1; SELECT 2", "read", (), {"multi_statement"}),
    case("UPDATE t SET a=1; SELECT a FROM t", "write", {"t"}, {"multi_statement"}),
    case("SET @a=1; SELECT @a", "session", (),
         {"multi_statement", "user_variable_assign", "user_variable_read"}),
    case("BEGIN; INSERT INTO t VALUES (1); COMMIT", "write", {"t"}, {"multi_statement", "implicit_commit"}),
    case("SELECT ';' AS semi; SELECT 2", "read", (), {"multi_statement"}),
    case("SELECT 1;", "read"),
    case("SELECT 1; -- trailing comment", "read"),
]

DML = [
    case("INSERT INTO t (a) VALUES (1) ON DUPLICATE KEY UPDATE a = a + 1", "write", {"t"}),
    case("INSERT INTO t VALUES (1) AS new ON DUPLICATE KEY UPDATE a = new.a", "write", {"t"}),
    case("REPLACE INTO t (id, v) VALUES (1, 'x')", "write", {"t"}),
    case("REPLACE INTO t SELECT * FROM u", "write", {"t", "u"}),
    case("INSERT INTO archive SELECT * FROM orders WHERE created < '2020-01-01'", "write", {"archive", "orders"}),
    case("INSERT IGNORE INTO t SET a = 1, b = 2", "write", {"t"}),
    case("INSERT LOW_PRIORITY INTO t VALUES (1)", "write", {"t"}),
    case("INSERT DELAYED INTO t VALUES (1)", "write", {"t"}),
    case("INSERT HIGH_PRIORITY IGNORE INTO t VALUES (1)", "write", {"t"}),
    case("INSERT INTO t (id) VALUES (LAST_INSERT_ID())", "write", {"t"}, {"last_insert_id"}),
    case("INSERT INTO t VALUES (1) RETURNING id", "write", {"t"}),
    case("UPDATE orders o JOIN customers c ON o.customer_id = c.id SET o.vip = 1 WHERE c.total > 1000",
         "write", {"orders", "customers"}),
    case("UPDATE LOW_PRIORITY IGNORE t SET a = 1 ORDER BY id LIMIT 10", "write", {"t"}),
    case("DELETE o FROM orders o JOIN customers c ON o.customer_id = c.id WHERE c.deleted = 1",
         "write", {"orders", "customers"}),
    case("DELETE FROM t1, t2 USING t1 INNER JOIN t2 INNER JOIN t3 WHERE t1.id = t2.id AND t2.id = t3.id",
         "write", {"t1", "t2", "t3"}),
    case("DELETE LOW_PRIORITY QUICK IGNORE FROM t WHERE a = 1", "write", {"t"}),
    case("DELETE FROM t WHERE id = 1 RETURNING id", "write", {"t"}),
    case("UPDATE t SET counter = LAST_INSERT_ID(counter + 1)", "write", {"t"}, {"last_insert_id"}),
    case("INSERT INTO t SELECT * FROM u FOR UPDATE", "write", {"t", "u"}, {"locking"}),
    case("UPDATE `shop`.`orders` SET paid = 1 WHERE id = 2", "write", {"shop.orders"}),
]

LOAD_CALL_DO = [
    case("LOAD DATA INFILE '/tmp/x.csv' INTO TABLE t FIELDS TERMINATED BY ','", "write", {"t"}),
    case("LOAD DATA LOCAL INFILE 'x.csv' REPLACE INTO TABLE `db`.`t`", "write", {"db.t"}),
    case("LOAD XML LOCAL INFILE 'x.xml' INTO TABLE t ROWS IDENTIFIED BY '<row>'", "write", {"t"}),
    case("CALL refresh_stats()", "utility"),
    case("CALL get_total(5, @total)", "utility", (), {"user_variable_assign", "user_variable_read"}),
    case("DO SLEEP(1)", "utility", (), {"sleep"}),
    case("DO RELEASE_LOCK('x')", "utility", (), {"release_lock"}),
]

SHOW_EXPLAIN_ADMIN = [
    case("SHOW TABLES", "utility"),
    case("SHOW FULL PROCESSLIST", "utility", flags=["processlist"]),
    case("SHOW CREATE TABLE `orders`", "utility", {"orders"}),
    case("SHOW INDEX FROM orders FROM shop", "utility", {"shop.orders"}),
    case("SHOW SLAVE STATUS", "utility"),
    case("SHOW GLOBAL STATUS LIKE 'Threads%'", "utility"),
    case("SHOW WARNINGS", "utility", (), {"diagnostics"}),
    case("SHOW COUNT(*) ERRORS", "utility", (), {"diagnostics"}),
    case("SHOW ENGINE INNODB STATUS", "utility"),
    case("SHOW DATABASES", "utility"),
    case("EXPLAIN SELECT * FROM orders WHERE id = 1", "utility", {"orders"}),
    case("EXPLAIN FORMAT=JSON SELECT * FROM orders", "utility", {"orders"}),
    case("DESCRIBE orders", "utility", {"orders"}),
    case("DESC `shop`.`orders`", "utility", {"shop.orders"}),
    case("EXPLAIN UPDATE orders SET a = 1", "utility", {"orders"}),
    case("ANALYZE UPDATE orders SET a = 1", "write", {"orders"}),
    case("ANALYZE TABLE orders, customers", "utility", {"orders", "customers"}, {"implicit_commit"}),
    case("OPTIMIZE TABLE orders", "utility", {"orders"}, {"implicit_commit"}),
    case("CHECK TABLE orders", "utility", {"orders"}, {"implicit_commit"}),
    case("CHECKSUM TABLE orders", "utility", {"orders"}),
    case("REPAIR TABLE orders", "utility", {"orders"}, {"implicit_commit"}),
    case("KILL 42", "utility", flags=["kill"]),
    case("/* c */ KILL HARD 42", "utility", flags=["kill"]),
    case("SELECT 1; KILL USER app", "utility", flags=["multi_statement", "kill"]),
    case("SELECT ID FROM information_schema.PROCESSLIST", "read", ["information_schema.processlist"], ["processlist"]),
    case("KILL QUERY 42", "utility", flags=["kill"]),
    case("FLUSH TABLES WITH READ LOCK", "utility", (), {"lock_tables", "implicit_commit"}),
    case("FLUSH PRIVILEGES", "utility", (), {"implicit_commit"}),
    case("HANDLER orders OPEN", "utility", {"orders"}, {"handler"}),
    case("HANDLER orders READ `PRIMARY` FIRST", "utility", {"orders"}, {"handler"}),
    case("HANDLER orders CLOSE", "utility", {"orders"}, {"handler"}),
    case("HELP 'contents'", "utility"),
    case("GET DIAGNOSTICS @n = NUMBER", "utility", (), {"diagnostics", "user_variable_read"}),
    case("START SLAVE", "utility", (), {"implicit_commit"}),
]

SET_STATEMENTS = [
    case("SET autocommit=0", "session", (), {"set_autocommit", "set_session_variable"}),
    case("SET autocommit = 1", "session", (), {"set_autocommit", "set_session_variable"}),
    case("SET @@session.autocommit = OFF", "session", (), {"set_autocommit", "set_session_variable"}),
    case("SET sql_mode = 'STRICT_TRANS_TABLES,NO_ZERO_DATE'", "session", (), {"set_session_variable"}),
    case("SET SESSION sql_mode = CONCAT(@@sql_mode, ',ANSI_QUOTES')", "session", (), {"set_session_variable"}),
    case("SET time_zone = '+00:00'", "session", (), {"set_session_variable"}),
    case("SET @@session.time_zone = 'UTC'", "session", (), {"set_session_variable"}),
    case("SET GLOBAL max_connections = 500", "session", (), {"set_global_variable"}),
    case("SET PERSIST innodb_buffer_pool_size = 1073741824", "session", (), {"set_global_variable"}),
    case("SET @@GLOBAL.read_only = 1", "session", (), {"set_global_variable"}),
    case("SET CHARACTER SET utf8mb4", "session", (), {"set_session_variable"}),
    case("SET CHARSET 'latin1'", "session", (), {"set_session_variable"}),
    case("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", "session", (), {"set_session_variable"}),
    case("SET SESSION TRANSACTION READ ONLY", "session", (), {"set_session_variable"}),
    case("SET GLOBAL TRANSACTION ISOLATION LEVEL READ COMMITTED", "session", (), {"set_global_variable"}),
    case("SET sql_log_bin = 0", "session", (), {"set_session_variable", "set_sql_log_bin"}),
    case("SET @x = 5", "session", (), {"user_variable_assign"}),
    case("SET @x := (SELECT MAX(id) FROM orders)", "session", {"orders"}, {"user_variable_assign"}),
    case("SET @a = 1, @b = @a + 1", "session", (), {"user_variable_assign", "user_variable_read"}),
    case("SET NAMES utf8mb4, time_zone = '+00:00'", "session", (), {"set_session_variable"}),
    case("SET PASSWORD FOR 'bob'@'%' = 'secret'", "ddl", (), {"implicit_commit"}),
    case("SET ROLE ALL", "session", (), {"set_session_variable"}),
    case("SET STATEMENT max_statement_time = 10 FOR SELECT * FROM big", "read", {"big"}),
    case("SET LOCAL wait_timeout = 60", "session", (), {"set_session_variable"}),
    case("SET @x = LAST_INSERT_ID()", "session", (), {"user_variable_assign", "last_insert_id"}),
    case("SELECT @@session.transaction_isolation", "read"),
    case("SELECT @@warning_count", "read", (), {"diagnostics"}),
]

TRANSACTIONS = [
    case("START TRANSACTION", "transaction", (), {"implicit_commit"}),
    case("START TRANSACTION READ ONLY", "transaction", (),
         {"implicit_commit", "start_transaction_read_only", "read_only_transaction"}),
    case("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY", "transaction", (),
         {"implicit_commit", "start_transaction_read_only", "read_only_transaction"}),
    case("START TRANSACTION READ WRITE", "transaction", (), {"implicit_commit"}),
    case("BEGIN WORK", "transaction", (), {"implicit_commit"}),
    case("COMMIT WORK", "transaction"),
    case("ROLLBACK WORK", "transaction"),
    case("COMMIT AND CHAIN", "transaction"),
    case("XA START 'xid1'", "transaction", (), {"xa"}),
    case("XA END 'xid1'", "transaction", (), {"xa"}),
    case("XA PREPARE 'xid1'", "transaction", (), {"xa"}),
    case("XA COMMIT 'xid1'", "transaction", (), {"xa"}),
    case("XA ROLLBACK 'xid1'", "transaction", (), {"xa"}),
    case("XA RECOVER", "transaction", (), {"xa"}),
    case("LOCK TABLES orders READ, customers WRITE", "transaction", {"orders", "customers"},
         {"lock_tables", "implicit_commit"}),
    case("LOCK TABLE `shop`.`orders` AS o READ LOCAL", "transaction", {"shop.orders"},
         {"lock_tables", "implicit_commit"}),
    case("UNLOCK TABLES", "transaction", (), {"unlock_tables", "implicit_commit"}),
    case("LOCK INSTANCE FOR BACKUP", "transaction", (), {"lock_tables"}),
]

VARIABLES_AND_FUNCTIONS = [
    case("SELECT @rownum := @rownum + 1 AS rank, name FROM players", "read", {"players"},
         {"user_variable_assign", "user_variable_read"}),
    case("SELECT a, b INTO @a, @b FROM t WHERE id = 1", "read", {"t"}, {"select_into", "user_variable_assign"}),
    case("SELECT a FROM t WHERE id = 1 INTO @a", "read", {"t"}, {"select_into", "user_variable_assign"}),
    case("SELECT * FROM orders INTO OUTFILE '/tmp/orders.csv' FIELDS TERMINATED BY ','",
         "read", {"orders"}, {"select_into"}),
    case("SELECT a INTO DUMPFILE '/tmp/x' FROM t", "read", {"t"}, {"select_into"}),
    case("SELECT @x", "read", (), {"user_variable_read"}),
    case("SELECT LAST_INSERT_ID()", "read", (), {"last_insert_id"}),
    case("SELECT ROW_COUNT()", "read", (), {"row_count"}),
    case("SELECT RELEASE_LOCK('x')", "read", (), {"release_lock"}),
    case("SELECT RELEASE_ALL_LOCKS()", "read", (), {"release_lock"}),
    case("SELECT IS_FREE_LOCK('x'), IS_USED_LOCK('y')", "read", (), {"lock_info"}),
    case("SELECT NEXTVAL(seq)", "read", (), {"sequence"}),
    case("SELECT NEXT VALUE FOR seq", "read", (), {"sequence"}),
    case("SELECT SETVAL(seq, 100)", "read", (), {"sequence"}),
    case("SELECT SLEEP(0.5)", "read", (), {"sleep"}),
    case("select get_lock('x', 10)", "read", (), {"get_lock"}),
    case("SELECT * FROM t WHERE id = 1 LOCK IN SHARE MODE", "locking_read", {"t"}, {"locking"}),
    case("SELECT * FROM t WHERE id = 1 FOR SHARE", "locking_read", {"t"}, {"locking"}),
    case("(SELECT a FROM t1) UNION (SELECT a FROM t2 FOR UPDATE)", "locking_read", {"t1", "t2"}, {"locking"}),
    case("SELECT * FROM t WHERE id IN (SELECT id FROM u FOR UPDATE)", "locking_read", {"t", "u"}, {"locking"}),
]

DDL = [
    case("CREATE TEMPORARY TABLE tmp_ids (id INT PRIMARY KEY)", "ddl", {"tmp_ids"}, {"create_temporary_table"}),
    case("CREATE TEMPORARY TABLE tmp SELECT * FROM orders", "ddl", {"tmp", "orders"}, {"create_temporary_table"}),
    case("DROP TEMPORARY TABLE IF EXISTS tmp_ids", "ddl", {"tmp_ids"}, {"drop_temporary_table"}),
    case(
        "CREATE TABLE IF NOT EXISTS `x` (`id` int NOT NULL AUTO_INCREMENT, PRIMARY KEY (`id`)) "
        "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
        "ddl", {"x"}, {"implicit_commit"},
    ),
    case("CREATE TABLE t2 LIKE t1", "ddl", {"t1", "t2"}, {"implicit_commit"}),
    case("ALTER TABLE orders ADD INDEX idx_created (created), ALGORITHM=INPLACE, LOCK=NONE",
         "ddl", {"orders"}, {"implicit_commit"}),
    case("ALTER TABLE `shop`.`orders` DROP COLUMN note", "ddl", {"shop.orders"}, {"implicit_commit"}),
    case("DROP TABLE IF EXISTS a, b.c", "ddl", {"a", "b.c"}, {"implicit_commit"}),
    case("TRUNCATE TABLE logs", "ddl", {"logs"}, {"implicit_commit"}),
    case("TRUNCATE logs", "ddl", {"logs"}, {"implicit_commit"}),
    case("RENAME TABLE a TO a_old, a_new TO a", "ddl", {"a", "a_old", "a_new"}, {"implicit_commit"}),
    case("CREATE VIEW v AS SELECT id FROM orders", "ddl", {"v", "orders"}, {"implicit_commit"}),
    case("CREATE DATABASE shop", "ddl", (), {"implicit_commit"}),
    case("DROP DATABASE IF EXISTS shop", "ddl", (), {"implicit_commit"}),
    case("CREATE USER 'app'@'%' IDENTIFIED BY 'pw'", "ddl", (), {"implicit_commit"}),
    case("GRANT SELECT ON shop.* TO 'app'@'%'", "ddl", (), {"implicit_commit"}),
    case("REVOKE ALL PRIVILEGES ON *.* FROM 'app'@'%'", "ddl", (), {"implicit_commit"}),
    case("DROP USER 'app'@'%'", "ddl", (), {"implicit_commit"}),
    case("CREATE INDEX idx ON orders (customer_id)", "ddl", {"orders"}, {"implicit_commit"}),
    case("DROP INDEX idx ON orders", "ddl", {"orders"}, {"implicit_commit"}),
    case("CREATE TRIGGER trg BEFORE INSERT ON orders FOR EACH ROW SET NEW.created = NOW()",
         "ddl", {"orders"}, {"implicit_commit"}),
    case("CREATE PROCEDURE p() BEGIN SELECT 1; SELECT 2; END", "ddl", (), {"implicit_commit"}),
    case("CREATE SEQUENCE s START WITH 1", "ddl", {"s"}, {"implicit_commit"}),
    case("ALTER DATABASE shop CHARACTER SET utf8mb4", "ddl", (), {"implicit_commit"}),
]

PREPARED_AND_USE = [
    case("PREPARE stmt FROM 'SELECT * FROM t WHERE id = ?'", "session", (), {"text_prepare"}),
    case("PREPARE stmt FROM @sql", "session", (), {"text_prepare", "user_variable_read"}),
    case("EXECUTE stmt USING @id", "unknown", (), {"text_execute", "user_variable_read"}),
    case("EXECUTE stmt", "unknown", (), {"text_execute"}),
    case("DEALLOCATE PREPARE stmt", "session", (), {"deallocate"}),
    case("DROP PREPARE stmt", "session", (), {"deallocate"}),
    case("USE shop", "session", (), {"change_schema"}),
    case("USE `my-db`", "session", (), {"change_schema"}),
]

MISC_READS = [
    case("SELECT 1", "read"),
    case("SELECT 1 FROM DUAL", "read"),
    case("SELECT NOW(), VERSION(), CONNECTION_ID()", "read", flags=["connection_id"]),
    case("TABLE orders", "read", {"orders"}),
    case("VALUES ROW(1, 2), ROW(3, 4)", "read"),
    case("SELECT * FROM t PARTITION (p0)", "read", {"t"}),
    case("SELECT * FROM information_schema.tables WHERE table_schema = 'shop'", "read",
         {"information_schema.tables"}),
    case("SELECT JSON_EXTRACT(doc, '$.a') FROM docs", "read", {"docs"}),
    case("SELECT doc->>'$.name' FROM docs", "read", {"docs"}),
    case("select * from Orders where ID = 1", "read", {"orders"}),
    case("SELECT * FROM `Shop`.`Orders`", "read", {"shop.orders"}),
    case("SELECT * FROM t1 NATURAL JOIN t2 STRAIGHT_JOIN t3", "read", {"t1", "t2", "t3"}),
    case("SELECT a FROM t GROUP BY a WITH ROLLUP", "read", {"t"}),
    case("SELECT SQL_NO_CACHE HIGH_PRIORITY * FROM t FORCE INDEX (PRIMARY) WHERE id > 5", "read", {"t"}),
    case("SELECT x FROM JSON_TABLE('[1]', '$[*]' COLUMNS (x INT PATH '$')) AS jt", "read"),
]

UNPARSABLE = [
    case("garbage here !!", "write", unparsable=True),
    case("SELEC * FROM t", "write", {"t"}, unparsable=True),
    case("SELECT * FROM t AS OF TIMESTAMP '2020-01-01'", "write", {"t"}, unparsable=True),
    case("UPDATE", "write", unparsable=True),
    case("SELECT 'unterminated FROM t", "write", unparsable=True),
    case("SELECT * FROM t WHERE (a = 1", "write", {"t"}, unparsable=True),
    case("SELECT * FROM t WHERE x = 1 FOR UPDATE SKIP", "write", {"t"}, {"locking"}, unparsable=True),
    case("foo", "write", unparsable=True),
    case("", "unknown"),
    case("/* just a comment */", "unknown"),
]

ALL_CASES = (
    SYSBENCH + DJANGO + SQLALCHEMY + HIBERNATE + WORDPRESS + CTE_AND_WINDOWS + HINTS_AND_COMMENTS
    + EXECUTABLE_COMMENTS + MULTI_STATEMENTS + DML + LOAD_CALL_DO + SHOW_EXPLAIN_ADMIN + SET_STATEMENTS
    + TRANSACTIONS + VARIABLES_AND_FUNCTIONS + DDL + PREPARED_AND_USE + MISC_READS + UNPARSABLE
)


def test_there_are_at_least_150_cases() -> None:
    assert len(ALL_CASES) >= 150


@pytest.mark.parametrize("sql, kind, tables, flags, unparsable", ALL_CASES)
def test_classification(sql: str, kind: str, tables: frozenset, flags: frozenset, unparsable: bool) -> None:
    c = classify_statement(sql)
    got = (c.kind.label, c.tables, frozenset(c.flag_names()), c.is_unparsable)
    assert got == (kind, tables, flags, unparsable), c
    if unparsable:
        assert c.parse_error, "an unparsable statement keeps the reason"


@pytest.mark.parametrize("sql, kind, tables, flags, unparsable", ALL_CASES)
def test_cached_classification_equals_uncached(
    sql: str, kind: str, tables: frozenset, flags: frozenset, unparsable: bool
) -> None:
    classifier = Classifier()
    first = classifier.classify(sql)
    second = classifier.classify(sql)
    assert first == second == classify_statement(sql)
    assert classifier.statistics().hits == 1


# ---------------------------------------------------------------------------
# Details beyond kind/tables/flags


def test_table_keys_add_bare_names_of_qualified_tables() -> None:
    c = classify_statement("SELECT * FROM shop.orders JOIN customers ON 1")
    assert c.tables == {"shop.orders", "customers"}
    assert c.table_keys == {"shop.orders", "orders", "customers"}


def test_cte_names_are_not_tables() -> None:
    c = classify_statement("WITH orders AS (SELECT 1 AS id) SELECT * FROM orders")
    assert c.tables == frozenset()


def test_use_records_the_schema() -> None:
    assert classify_statement("USE `My-Db`").schema == "my-db"
    assert classify_statement("USE shop").schema == "shop"


def test_commands() -> None:
    assert classify_statement("START TRANSACTION").command == "START TRANSACTION"
    assert classify_statement("WITH a AS (SELECT 1) UPDATE t JOIN a SET x = 1").command == "UPDATE"
    assert classify_statement("(SELECT 1)").command == "SELECT"
    assert classify_statement("replace into t values (1)").command == "REPLACE"
    assert classify_statement("SELECT 1; UPDATE t SET a = 1").command == "SELECT"
    assert classify_statement("SELECT 1; UPDATE t SET a = 1").statement_count == 2


def test_unparsable_keeps_the_sqlglot_error_text() -> None:
    c = classify_statement("SELECT * FROM t WHERE (a = 1")
    assert c.is_unparsable
    assert c.parse_error is not None and c.parse_error.startswith("ParseError")
    assert "\x1b" not in c.parse_error  # no terminal colour codes


def test_keyword_fallback_records_parse_error_but_is_not_unparsable() -> None:
    # sqlglot cannot parse this ALTER; the keyword says DDL, tables come from a scan
    c = classify_statement("ALTER TABLE t ADD COLUMN x INT, ALGORITHM=INSTANT, FORCE WEIRDNESS")
    assert c.kind is StatementKind.DDL
    assert not c.is_unparsable
    assert c.tables == {"t"}


def test_multi_statement_combines_strongest_kind_and_unions() -> None:
    c = classify_statement("SELECT a FROM t1; LOCK TABLES t2 WRITE; SELECT 1 FROM t3 FOR UPDATE")
    assert c.kind is StatementKind.LOCKING_READ
    assert c.tables == {"t1", "t2", "t3"}
    assert StatementFlag.LOCK_TABLES in c.flags and StatementFlag.LOCKING in c.flags
    assert StatementFlag.MULTI_STATEMENT in c.flags
    assert c.statement_count == 3


def test_multi_statement_with_an_unparsable_part() -> None:
    c = classify_statement("SELECT 1; garbage !!")
    assert c.kind is StatementKind.WRITE
    assert c.is_unparsable
    assert c.parse_error


def test_multi_statement_ddl_beats_write() -> None:
    assert classify_statement("INSERT INTO t VALUES (1); DROP TABLE t").kind is StatementKind.DDL


def test_kind_strength_order() -> None:
    order = [StatementKind.READ, StatementKind.UTILITY, StatementKind.SESSION, StatementKind.TRANSACTION,
             StatementKind.LOCKING_READ, StatementKind.UNKNOWN, StatementKind.WRITE, StatementKind.DDL]
    assert sorted(order) == order


def test_routes_to_writer() -> None:
    assert not classify_statement("SELECT 1 FROM t").routes_to_writer
    assert classify_statement("SELECT LAST_INSERT_ID()").routes_to_writer
    assert classify_statement("SELECT 1 FROM t FOR UPDATE").routes_to_writer
    assert classify_statement("SELECT a INTO @a FROM t").routes_to_writer
    assert classify_statement("SHOW TABLES").routes_to_writer


def test_summary() -> None:
    s = classify_statement("SELECT * FROM t FOR UPDATE").summary()
    assert s == "locking_read command=SELECT tables=t flags=locking"


# ---------------------------------------------------------------------------
# SET variables


@pytest.mark.parametrize(
    "sql, expected",
    [
        ("SET autocommit=0", (SetVariable("autocommit", "0", "session"),)),
        ("SET NAMES utf8mb4", (SetVariable("names", "utf8mb4", "session"),)),
        ("SET NAMES 'utf8mb4' COLLATE 'utf8mb4_unicode_ci'",
         (SetVariable("names", "'utf8mb4' COLLATE 'utf8mb4_unicode_ci'", "session"),)),
        ("SET CHARACTER SET utf8", (SetVariable("charset", "utf8", "session"),)),
        ("SET sql_mode = 'A,B', time_zone='+00:00'",
         (SetVariable("sql_mode", "'A,B'", "session"), SetVariable("time_zone", "'+00:00'", "session"))),
        ("SET @@session.sql_mode = CONCAT(@@sql_mode, ',X'), @@global.y = 2",
         (SetVariable("sql_mode", "CONCAT(@@sql_mode, ',X')", "session"), SetVariable("y", "2", "global"))),
        # "the most recent scope modifier applies to following assignments that have none"
        ("SET GLOBAL a = 1, b = 2, SESSION c = 3, d = 4",
         (SetVariable("a", "1", "global"), SetVariable("b", "2", "global"),
          SetVariable("c", "3", "session"), SetVariable("d", "4", "session"))),
        ("SET LOCAL a = 1", (SetVariable("a", "1", "session"),)),
        ("SET PERSIST_ONLY a = 1", (SetVariable("a", "1", "persist_only"),)),
        ("SET @x = 1, @`Y z` := 'v'", (SetVariable("@x", "1", "user"), SetVariable("@y z", "'v'", "user"))),
        ("SET `sql_mode` = ''", (SetVariable("sql_mode", "''", "session"),)),
        ("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
         (SetVariable("transaction_isolation", "'READ-COMMITTED'", "session"),)),
        ("SET TRANSACTION READ ONLY, ISOLATION LEVEL REPEATABLE READ",
         (SetVariable("transaction_read_only", "ON", "next_transaction"),
          SetVariable("transaction_isolation", "'REPEATABLE-READ'", "next_transaction"))),
        ("SET GLOBAL TRANSACTION READ WRITE", (SetVariable("transaction_read_only", "OFF", "global"),)),
        ("/* c */ SET time_zone = 'UTC' -- done", (SetVariable("time_zone", "'UTC'", "session"),)),
        ("/*!40101 SET NAMES utf8 */", (SetVariable("names", "utf8", "session"),)),
        ("SET @a=1; SET b=2", (SetVariable("@a", "1", "user"), SetVariable("b", "2", "session"))),
        ("SET x = (SELECT 1, 2)", (SetVariable("x", "(SELECT 1, 2)", "session"),)),
        ("SET ROLE ALL", None),
        ("SET x", None),
        ("SET a = ", None),  # unparsable: session state unknown
        ("SET SESSION @@x = 1", None),
        ("SELECT 1", ()),
        ("SET PASSWORD = 'x'", ()),
    ],
)
def test_set_variables(sql: str, expected) -> None:
    assert classify_statement(sql).set_variables == expected


def test_set_values_are_not_served_from_the_cache() -> None:
    classifier = Classifier()
    a = classifier.classify("SET sql_mode = 'A'")
    b = classifier.classify("SET sql_mode = 'B'")
    assert a.set_variables == (SetVariable("sql_mode", "'A'"),)
    assert b.set_variables == (SetVariable("sql_mode", "'B'"),)
    s = classifier.statistics()
    assert (s.hits, s.misses) == (1, 1)  # same digest: the second is a hit, values re-extracted
    # multi-statement SETs too
    classifier.classify("SET @a = 1; SET autocommit = 0")
    c = classifier.classify("SET @a = 2; SET autocommit = 1")
    assert c.set_variables == (SetVariable("@a", "2", "user"), SetVariable("autocommit", "1"))


def test_set_flags_depend_on_names_not_values() -> None:
    classifier = Classifier()
    for value in ("0", "1", "OFF"):
        c = classifier.classify(f"SET autocommit = {value}")
        assert StatementFlag.SET_AUTOCOMMIT in c.flags


# -- statements too long to give to sqlglot as they are ---------------------------------------


@pytest.mark.parametrize(
    "head, tail, kind, flags",
    [
        ("SELECT * FROM big WHERE id IN (", ") FOR UPDATE", "locking_read", {"locking"}),
        ("SELECT c, LAST_INSERT_ID() FROM big WHERE id IN (", ")", "read", {"last_insert_id"}),
        ("INSERT INTO big (id) VALUES (", ")", "write", set()),
        ("DELETE FROM big WHERE id IN (", ")", "write", set()),
    ],
)
def test_long_statements_are_classified_by_their_digest(monkeypatch, head, tail, kind, flags):
    import myrouter.routing.classifier as C

    seen: list[int] = []
    real_parse = C._parse
    monkeypatch.setattr(C, "_parse", lambda text: (seen.append(len(text)), real_parse(text))[1])
    sql = head + ",".join(str(i) for i in range(20000)) + tail  # over 100 KB
    assert len(sql) > C.LONG_STATEMENT
    c = C.classify_statement(sql)
    assert c.kind.label == kind and {f.name.lower() for f in C.StatementFlag if f.value and f in c.flags
                                     and f is not C.StatementFlag.SIDE_EFFECT} == flags
    assert "big" in c.tables and not c.is_unparsable
    assert seen and max(seen) <= C.LONG_STATEMENT  # sqlglot saw the folded digest only


def test_a_long_statement_that_stays_long_as_a_digest_is_a_write_without_parsing(monkeypatch):
    import myrouter.routing.classifier as C

    monkeypatch.setattr(C, "_parse", lambda text: pytest.fail("sqlglot must not parse it"))
    columns = ", ".join(f"col{i}" for i in range(8000))  # column names are not folded
    c = C.classify_statement(f"SELECT {columns} FROM wide")
    assert c.kind.label == "write" and c.is_unparsable and "judged by its head" in c.parse_error


def test_a_huge_statement_is_judged_by_its_head(monkeypatch):
    import myrouter.routing.classifier as C

    monkeypatch.setattr(C, "_parse", lambda text: pytest.fail("sqlglot must not parse it"))
    scanned: list[int] = []
    real_digest = C.digest_text
    monkeypatch.setattr(C, "digest_text", lambda text: (scanned.append(len(text)), real_digest(text))[1])
    sql = "SELECT * FROM huge WHERE id IN (" + ",".join(str(i) for i in range(700000)) + ")"
    assert len(sql) > C.HUGE_STATEMENT
    c = C.classify_statement(sql)
    assert c.kind.label == "write" and c.is_unparsable and "judged by its head" in c.parse_error
    assert "huge" in c.tables and max(scanned) <= C.LONG_STATEMENT  # only the head was read
