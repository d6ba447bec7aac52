"""Pure rules of the notifications service: no I/O, time comes from the caller."""
