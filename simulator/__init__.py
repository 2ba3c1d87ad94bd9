"""Simulated backends of equal standing for every hal protocol, the virtual clock and scenarios.

Never imports ``recorder`` or ``firmware``.
"""
