"""Benchmarks of the foundation issue: `/usr/bin/python3 -m bench.run` (see bench/run.py).

bench/cases.py    the units and files measured (sdcontainer, plain floor, Quadlet-style podman)
bench/inner.py    timing loops that run inside the testbed (stdlib only)
bench/profile.py  -X importtime aggregation and the strace phase breakdown
bench/report.py   statistics, target verdicts, the markdown report
bench/results/    latest.md and latest.json of the last full run
"""
