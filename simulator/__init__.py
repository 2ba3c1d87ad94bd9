"""Simulated backends of equal standing for every hal protocol, the virtual clock and the scenario player. Never imports recorder or firmware."""
