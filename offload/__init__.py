"""Offload of sealed evidence to a dock share or an S3 bucket with Object Lock (docs/offload.md)."""
