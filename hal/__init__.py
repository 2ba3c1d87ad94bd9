"""Hardware abstraction layer: protocols, value types and errors, plus the real Pi backends.

Only the backend modules (``hal.picamera``, ``hal.gpio``, ``hal.gnss_serial``, ``hal.alsa``) import
hardware libraries, and only when the composition root selects them. Nothing here imports
``recorder``, ``simulator`` or ``firmware``.
"""
