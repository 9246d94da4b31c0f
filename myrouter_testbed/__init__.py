"""The project's test bed: throw-away MariaDB and etcd servers on loopback ports.

Not part of the proxy (``myrouter`` never imports it): the tests, ``make run`` and the
benchmarks use it.

- :mod:`myrouter_testbed.mariadb`: a MariaDB primary + N GTID replicas (``start_cluster``);
  ``python -m myrouter_testbed.mariadb`` keeps one running until Ctrl-C.
- :mod:`myrouter_testbed.etcd`: a private etcd cluster for the ``[cluster]`` tests (``start_etcd``).
- :mod:`myrouter_testbed.demo`: what ``make run`` runs (``python -m myrouter_testbed``): a primary
  + 2 replicas and the proxy in front of them.
"""
