"""The study's configuration: one typed, validated schema per component, composed into profiles.

- `schema`: the machinery (fields with choices, planned fields, `build`, `ParamError`);
- `data`, `classify`, `generate`, `compare`, `runtime`: the sections, each beside the others of its stage;
- `profiles`: YAML profiles composed over the defaults (`base:`, `a+b`, `--set section.key=value`);
- `notebooks`: each notebook's parameters cell, rendered from the sections and validated in the notebook.

`python -m lus_utils.config` rewrites the notebooks' parameters cells after a section is edited.
"""
