"""Audit: attacks run on a finished run's released models and uploads (membership and
label-distribution inference)."""
