"""Benchmarks (not timed tests). `make bench` / `make bench-quick` run bench/run.py."""
