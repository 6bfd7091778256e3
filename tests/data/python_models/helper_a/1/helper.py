"""The helper of model helper_a."""

WHO = "helper_a"
