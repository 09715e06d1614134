"""Benchmarks of the panel against the raw tools, side by side in one run (``make bench``).

``python -m bench`` generates Alembic projects in a temporary directory, runs every
measurement module listed in ``bench.__main__.MEASUREMENTS`` and writes ``bench/RESULTS.md``.
Timings never live in the tests; they live here.
"""
