"""Benchmarks, run as `python -m keras_fmnist.bench` (not timed tests)."""
