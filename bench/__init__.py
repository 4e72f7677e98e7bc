"""Load and capacity benchmarks (not tests): `make bench`, `make bench-overload`, `make drill`."""
