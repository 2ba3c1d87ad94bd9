"""Suite-wide test settings.

Hypothesis's per-example deadline is a wall-clock limit: on a loaded 2-core CI machine it fails
tests for being slow, not for being wrong. Speed is measured by `make bench`, never by a test, so
the deadline is off for every property test; each test's own example count still bounds its work.
"""

from hypothesis import settings

settings.register_profile("bwc", deadline=None)
settings.load_profile("bwc")
