#!/usr/bin/env python
"""Run the whole study (or some stages) with one profile: `python run_all.py --help`."""
from lus_utils.run.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
