"""What the tests share (and the benchmarks import): factories, builders, real workers and servers, checks."""
