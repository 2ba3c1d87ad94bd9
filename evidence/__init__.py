"""The evidence store: sealing (encrypt, sign, chain, durable write), verification and opening.

Format: docs/evidence-format.md. Nothing here deletes evidence or reads the wall clock.
"""
