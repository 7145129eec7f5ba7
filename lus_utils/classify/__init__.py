"""Stage 2: classifiers, their data, training loop and metrics (notebooks 02 and 03)."""
