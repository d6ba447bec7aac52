"""Pure rules of the tiering service: no I/O, time comes from the caller."""
