"""pytest plugin of the benchmarks (placeholder while they are built)."""
