"""Admin SQL in the worker thread (myrouter/admin/core.py): what it reads of the running proxy is
taken on the event loop first (the digest table a slice at a time) and is complete."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_admin_engine import admin_without_rules, q

from myrouter.admin import core
from myrouter.admin.core import Admin


@pytest.fixture
def admin(tmp_path: Path) -> Admin:
    return admin_without_rules(tmp_path)


async def test_digest_table_read_in_slices_is_complete(admin: Admin) -> None:
    n = core.DIGEST_SNAPSHOT_SLICE * 2 + 7
    for i in range(n):
        admin.app.digest_stats.record(0, "test", "app", "127.0.0.1", i, f"SELECT c{i} FROM t", 100, 0, 1)
    assert await q(admin, "SELECT COUNT(*), COUNT(DISTINCT digest), SUM(count_star) FROM stats_mysql_query_digest"
                   ) == [(n, n, n)]
    assert await q(admin, "SELECT COUNT(*) FROM stats_mysql_query_digest_reset") == [(n,)]
    assert len(admin.app.digest_stats) == 0
    assert await q(admin, "SELECT COUNT(*) FROM stats_mysql_query_digest") == [(0,)]


async def test_a_failed_statement_leaves_the_admin_usable(admin: Admin) -> None:
    from test_admin_engine import error

    assert (await error(admin, "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
                               "SELECT count(*) FROM c")).code == 1317
    assert await q(admin, "SELECT COUNT(*) FROM mysql_servers") == [(3,)]
