"""Benchmarks. `python -m bench` runs them all; each `bench/bench_*.py` also runs alone."""
