"""The study runner (`run_all.py`): `planning` (profile to runs), `cache_keys` (when a run is done, why it runs),
`executors` (one run with papermill; local, pool and submitit), `study` (the loop over levels), `cli`."""
