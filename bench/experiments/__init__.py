"""One-off experiments behind the recommendations in BENCHMARKS.md; not product code, not tests."""
