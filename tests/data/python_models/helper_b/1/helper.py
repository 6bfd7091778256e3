"""The helper of model helper_b."""

WHO = "helper_b"
