"""The recorder daemon's logic: pre-event buffer, state machine, gestures, segments and sealing.

Depends on ``hal`` protocols only; never on a concrete backend, never on ``simulator``.
"""
