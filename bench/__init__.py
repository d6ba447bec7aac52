"""Benchmarks: ``make bench`` runs them all; they are not part of ``make test``."""
