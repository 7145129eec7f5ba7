"""The study runner: plan, cache keys, executors and the command line (run_all.py)."""
