"""Benchmarks behind `vergence bench`: latency per player mode against a bare floor pipeline (see bench/README.md)."""
