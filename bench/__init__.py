"""Benchmarks: ``python -m bench`` (or ``make bench``) runs every section listed in ``bench.__main__``."""
