"""Password literals are masked in the logs (pure)."""

from __future__ import annotations

import logging

import pytest

from myrouter.protocol.errors import MySQLError
from myrouter.stats.auditlog import error_fields
from myrouter.stats.querylog import MaskPasswords, mask_passwords


@pytest.mark.parametrize("sql, expected", [
    ("CREATE USER u IDENTIFIED BY 'secret'", "CREATE USER u IDENTIFIED BY '***'"),
    ("ALTER USER u@'%' identified by \"se'cret\"", "ALTER USER u@'%' identified by '***'"),
    ("GRANT ALL ON *.* TO u IDENTIFIED BY PASSWORD '*6BB4837EB74329105EE4568DDA7DC67ED2CA2AD9'",
     "GRANT ALL ON *.* TO u IDENTIFIED BY PASSWORD '***'"),
    ("CREATE USER u IDENTIFIED VIA mysql_native_password USING PASSWORD('s3cr''et')",
     "CREATE USER u IDENTIFIED VIA mysql_native_password USING PASSWORD('***')"),
    ("CREATE USER u IDENTIFIED WITH caching_sha2_password BY 'x\\'y'",
     "CREATE USER u IDENTIFIED WITH caching_sha2_password BY '***'"),
    ("SET PASSWORD FOR u = PASSWORD('pw')", "SET PASSWORD FOR u = PASSWORD('***')"),
    ("SET PASSWORD = 'pw'", "SET PASSWORD = '***'"),
    ("CHANGE MASTER TO MASTER_USER='r', MASTER_PASSWORD='pw'", "CHANGE MASTER TO MASTER_USER='r', MASTER_PASSWORD='***'"),
    ("SELECT password FROM users WHERE id = 1", "SELECT password FROM users WHERE id = 1"),
    ("CREATE USER u IDENTIFIED BY 'unterminated", "CREATE USER u IDENTIFIED BY '***'"),
])
def test_mask(sql, expected):
    assert mask_passwords(sql) == expected


def test_process_log_filter_masks_formatted_messages():
    record = logging.LogRecord("myrouter", logging.INFO, __file__, 1, "error in %s", ("SET PASSWORD = 'pw'",), None)
    assert MaskPasswords().filter(record)
    assert record.getMessage() == "error in SET PASSWORD = '***'"


def test_audit_error_fields_mask_passwords():
    err = MySQLError(1064, "You have an error in your SQL syntax near 'IDENTIFIED BY 'pw' x' at line 1", "42000")
    assert error_fields(err)["error"] == "You have an error in your SQL syntax near 'IDENTIFIED BY '***' x' at line 1"
