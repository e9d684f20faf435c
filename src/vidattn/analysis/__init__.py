"""Analysis tools: compute counting (flops), attention visualisation, benchmarks."""
