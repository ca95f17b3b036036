"""Benchmarks: cost per million events, cold start and throughput, measured side by side in one run.

``python -m bench`` (``make bench``) prints one table and writes ``docs/benchmarks.md``.
"""
