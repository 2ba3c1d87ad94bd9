"""Benchmarks: the unit measured against its physical limits (``make bench``).

Benchmarks report; they never fail on a slow machine. Each topic module has ``run()`` returning
CONTRACT §8 rows ({"name", "value", "unit", "goal", "note"}); ``python -m bench`` runs them all.
"""
