"""Online (domain-incremental) continual learning: benchmark domains, metrics."""
