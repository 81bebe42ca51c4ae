"""Benchmarks: each `bench_<name>.py` exposes `run(out_dir) -> dict`; `invoke bench` writes build/bench/<name>.json."""
