"""What the proxy counts: the process counters, per-digest and per-command statement stats, pins."""

from __future__ import annotations

from ..backend.pins import PinCounters
from ..config import MySQLVariables
from ..stats.counters import Counters
from ..stats.digests import CommandCounters, DigestStats


class Stats:
    def __init__(self, v: MySQLVariables) -> None:
        self.counters = Counters()
        # per-statement accounting (stats_mysql_query_digest, stats_mysql_commands_counters)
        self.digest_stats = DigestStats()
        self.command_counters = CommandCounters(long_query_us(v))
        self.pin_counters = PinCounters()  # why sessions keep their backend connections
        self.configure(v)

    def configure(self, v: MySQLVariables) -> None:
        """mysql-query_digests and mysql-commands_stats: whether statements are counted per digest
        and per command; mysql-long_query_time: what counts as a slow query."""
        self.digest_stats.enabled = v.query_digests
        self.command_counters.enabled = v.commands_stats
        self.command_counters.slow_query_us = long_query_us(v)


def long_query_us(v: MySQLVariables) -> int:
    return int(v.items().get("long_query_time", 1000)) * 1000
