"""The proxy's shared runtime state, as small components that each own one thing.

Constructed and wired by ``myrouter.app``; used by the sessions (``frontend``), the admin
interface, the monitor and the cluster node. It sits above ``backend``/``routing`` and below
``frontend``: nothing here imports a session, the admin or the app.
"""
