"""Axeom benchmark harness (run by hand: ``python -m bench.run``; not part of the test suite)."""
