"""Pure rules of the complaints service: no I/O, time comes from the caller."""
