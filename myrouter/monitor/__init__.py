"""Backend monitoring: health checks, shunning, replication lag, writer/reader discovery.

:class:`Monitor` runs the checks (:mod:`.checks`), keeps their logs
(:mod:`.logs`, the admin's ``monitor`` schema) and applies the decisions
(:mod:`.state`) to the proxy's hostgroups (:mod:`myrouter.routing.hostgroups`).
"""

from .monitor import Monitor

__all__ = ["Monitor"]
