"""The four services of the platform; each starts with ``python -m services.<name>``."""
