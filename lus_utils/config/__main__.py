"""python -m lus_utils.config: rewrite the notebooks' parameters cells after editing a section."""
from lus_utils.config.notebooks import sync_notebook_parameters

print("rewrote the parameters cell of:", sync_notebook_parameters() or "nothing (all in sync)")
