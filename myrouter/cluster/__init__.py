"""[cluster]: several myrouter instances sharing their configuration through etcd (see model.py)."""
