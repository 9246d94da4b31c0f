# Thin wrappers around scripts/bootstrap.sh: every target sets the machine up first
# (idempotent: a second run does no apt or pip work).
#   make run                      the proxy in front of a local primary + 2 replicas
#   make test PYTEST_ARGS='-x -q' the tests (all of them)
#   make test-unit                the unit tests alone: no server started, a minute or so
#   make bench                    the benchmarks

PYTEST_ARGS ?=

.PHONY: setup run test test-unit bench

setup:
	bash scripts/bootstrap.sh

run: setup
	.venv/bin/python -m myrouter_testbed

test: setup
	.venv/bin/python -m pytest $(PYTEST_ARGS)

test-unit: setup
	.venv/bin/python -m pytest -m unit $(PYTEST_ARGS)

bench: setup
	.venv/bin/python benchmarks/run_all.py
