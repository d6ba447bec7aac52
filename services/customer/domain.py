"""Pure rules of the customer service: no I/O, time comes from the caller."""
