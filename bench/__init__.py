"""pachsync benchmarks: `make bench` (= `python -m bench`) runs them all and prints a table.

Each `bench_*.py` exposes `main(argv=None) -> dict` (name, figures, checks against the targets
of issue 7, or a skip reason) and prints its figures with the ratio last. `bench/__main__.py`
collects them into bench/results/latest.json. Benchmarks start their own localpachd servers
as child processes (as the agent does) and never touch a running one.
"""
