"""Stage 3: generators of synthetic minority frames and the audit of what they make (notebooks 04, 05)."""
