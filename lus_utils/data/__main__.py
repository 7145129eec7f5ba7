"""`python -m lus_utils.data fetch`: the dataset's command line (lus_utils.data.dataset.main)."""
from lus_utils.data.dataset import main

if __name__ == "__main__":
    raise SystemExit(main())
