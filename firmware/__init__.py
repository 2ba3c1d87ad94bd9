"""The unit itself: provisioning, identity, boot slots, update bundles, health check, and the
composition root that picks backends and starts the recorder. May import every other layer."""

__version__ = "0.1.0"
