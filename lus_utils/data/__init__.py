"""Stage 1: the dataset, its frames, patient-grouped splits and the exploration views (notebook 01)."""
