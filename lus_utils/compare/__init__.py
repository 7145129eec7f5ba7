"""Stage 4: reading runs back, statistics, conclusions, figures and the report (notebook 06)."""
