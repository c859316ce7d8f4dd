"""What serves tests, demos and benchmarks rather than the running gateway (DESIGN.md,
"Growing the shell")."""
