"""Which models serve: the registry (lifecycle), where versions come from, how they load."""
