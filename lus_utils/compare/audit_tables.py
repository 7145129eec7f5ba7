"""The synthetic sets' audit figures as tables: what each audit.json holds (memorization, realism, the
quality gate), one row per set folder; the same per family (a family is made once per fold or draw: how many of
its sets reached the realism criterion, and by the second opinion's rule, the mean of each figure), beside the
mean metrics of each condition that trained on the family; and the closest synthetic-training pairs for the
figure.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lus_utils import records, synthetic_sets
from lus_utils.compare.labels import family_label
from lus_utils.compare.text import num
from lus_utils.config.compare import CompareParams
from lus_utils.paths import OutLayout
from lus_utils.vocabulary import NameError_, SetRef, metric_label


# Parts of audit.json that are not figures about the set itself (raw values, parameters, real-data scale).
AUDIT_SKIP = ("params", "code_version", "values", "thresholds", "closest_pairs", "real_reference", "intensity")


def _numeric_items(obj: dict[str, Any], prefix: str = "", depth: int = 5) -> dict[str, float]:
    """Numeric leaves of audit.json as dotted keys (`memorization.all_train.share_memorized`); null is NaN."""
    out: dict[str, float] = {}
    for key, value in obj.items():
        if key in AUDIT_SKIP or isinstance(value, bool):
            continue
        if isinstance(value, (int, float)) or value is None:
            out[f"{prefix}{key}"] = num(value)
        elif isinstance(value, dict) and depth > 1:
            out.update(_numeric_items(value, f"{prefix}{key}.", depth - 1))
    return out


def _audit_priority(key: str) -> tuple:
    lowered = key.lower()
    for rank, word in enumerate(("memoriz", "fd", "kid", "fid", "reject", "kept")):
        if word in lowered:
            return rank, key
    return 9, key


def load_audits(out_dir: Path) -> pd.DataFrame:
    """One row per synthetic set: the numeric figures its audit.json holds (dotted keys), gate counts."""
    layout = OutLayout(Path(out_dir))
    rows = []
    for set_dir in sorted(p for p in layout.synthetic.glob("*") if p.is_dir() and not p.name.startswith(".")):
        try:
            ref = SetRef.parse(set_dir.name)
        except NameError_:
            continue
        row: dict[str, Any] = {"synthetic_set": set_dir.name, "family": ref.family, "fold": ref.fold,
                               "repeat": ref.repeat, "target": ref.target, "k": ref.k, "draw": ref.draw}
        audit = records.read_audit(set_dir / "audit.json") or {}
        row["audited"] = bool(audit)
        row["reached_realism"] = audit.get("reached_realism")
        row["second_opinion_reached_realism"] = audit.get("second_opinion_reached_realism")
        row["leakage_ablation"] = synthetic_sets.leakage_ablation(set_dir)
        realism = audit.get("realism") if isinstance(audit.get("realism"), dict) else {}
        row["feature space"] = realism.get("feature_space", "")
        manifest = set_dir / "manifest.csv"
        if manifest.is_file():
            table = pd.read_csv(manifest, keep_default_na=False)
            row["n_images"] = len(table)
            if "passed_gate" in table:
                row["n_passed_gate"] = int(synthetic_sets.passed_gate(table).sum())
        figures = {k: v for k, v in _numeric_items(audit).items() if k not in row}
        row.update({k: figures[k] for k in sorted(figures, key=_audit_priority)})
        rows.append(row)
    return pd.DataFrame(rows)


def memorization_columns(audits: pd.DataFrame) -> list[str]:
    """Shares of memorized images: keys whose last part names memorization (share_memorized, memorized_share)."""
    return [c for c in audits.columns if "memori" in c.rsplit(".", 1)[-1].lower()]


def realism_columns(audits: pd.DataFrame) -> list[str]:
    """Realism figures, whatever the audit calls them (kid.<pair>.mean, c2st.auroc, density, coverage, the
    structure test's p_value, reached_realism, fd, ...)."""
    def realism(column: str) -> bool:
        last = column.rsplit(".", 1)[-1].lower()
        counts = last in ("std", "n", "subset_size", "feature_dim") or last.startswith(("n_", "subset"))
        tokens = re.split(r"[^a-z0-9]+", column.lower())
        return not counts and any(t.startswith(("fd", "fid", "kid", "c2st", "reached", "density", "coverage",
                                                "farther")) for t in tokens)

    return [c for c in audits.columns if realism(c)]


def _reached(verdicts: pd.Series) -> str:
    """"k of n" sets whose verdict is true, among those with a verdict; "n/a" when none has one."""
    measured = verdicts.dropna() if verdicts is not None else pd.Series(dtype=object)
    return f"{int(measured.astype(bool).sum())} of {len(measured)}" if len(measured) else "n/a"


def family_audits(audits: pd.DataFrame) -> pd.DataFrame:
    """One row per family: its sets (one per fold or draw), how many were audited and reached the realism
    criterion (and the second opinion's rule), the images kept by the gate, and the mean of every audit figure
    over its sets."""
    if audits.empty:
        return pd.DataFrame(columns=["family", "sets", "audited", "reached realism"])
    rows = []
    figures = [*memorization_columns(audits), *realism_columns(audits)]
    for family, group in audits.groupby("family", sort=True):
        row = {"family": family, "sets": len(group), "audited": int(group["audited"].sum()),
               "reached realism": _reached(group["reached_realism"]),
               "second opinion reached": _reached(group.get("second_opinion_reached_realism")),
               "leakage_ablation": bool(group["leakage_ablation"].any()),
               "feature space": ", ".join(sorted(set(group["feature space"]) - {""})),
               "images": int(group.get("n_images", pd.Series(dtype=float)).fillna(0).sum()),
               "kept by the gate": int(group.get("n_passed_gate", pd.Series(dtype=float)).fillna(0).sum())}
        for column in figures:
            if column != "reached_realism":
                values = pd.to_numeric(group[column], errors="coerce")
                row[column] = float(values.mean()) if values.notna().any() else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def synthetic_table(runs: pd.DataFrame, summary: pd.DataFrame, audits: pd.DataFrame,
                    params: CompareParams) -> pd.DataFrame:
    """Every synthetic family's audit figures (over its folds' or draws' sets) beside the mean metrics of each
    condition that trained on it (a family no classifier run used still gets its row, '(no classifier run)')."""
    used = runs[runs["has_synthetic"]][["design", "minority", "arch", "condition", "synthetic_set"]].drop_duplicates()
    used = used.rename(columns={"synthetic_set": "family"})
    if not summary.empty and not used.empty:
        means = summary.pivot_table(index=["design", "arch", "condition"], columns="metric", values="mean",
                                    aggfunc="first")
        means = means[[m for m in params.metrics if m in means.columns]]
        means.columns = [metric_label(c, "minority") for c in means.columns]
        used = used.merge(means.reset_index(), on=["design", "arch", "condition"], how="left")
    families = family_audits(audits)
    if families.empty:
        return used.reset_index(drop=True)
    table = families.merge(used, on="family", how="outer")
    table["condition"] = table["condition"].fillna("(no classifier run)")
    first = ["family", "design", "arch", "condition"]
    return table[first + [c for c in table.columns if c not in first]].reset_index(drop=True)


def example_pairs(out_dir: Path, synthetic_set: str, n: int) -> list[tuple[Path, Path, float]]:
    """The n gated synthetic images closest to a training frame, with that frame: (synthetic, train, sim)."""
    layout = OutLayout(Path(out_dir))
    set_dir = layout.synthetic / synthetic_set
    path = set_dir / "manifest.csv"
    if n <= 0 or not path.is_file():
        return []
    table = pd.read_csv(path, keep_default_na=False)
    if "nearest_train_path" not in table:
        return []
    table = table[table["nearest_train_path"].astype(str) != ""]
    if "passed_gate" in table:
        passed = synthetic_sets.passed_gate(table)
        table = table[passed] if passed.any() else table
    table = table.assign(_sim=pd.to_numeric(table.get("nearest_train_similarity"), errors="coerce"))
    table = table.sort_values("_sim", ascending=False, na_position="last").head(n)
    pairs = []
    for _, r in table.iterrows():
        image, train = set_dir / r["path"], layout.data / r["nearest_train_path"]
        if image.is_file() and train.is_file():
            pairs.append((image, train, num(r["_sim"])))
    return pairs


STRUCTURE_P = "realism.structure.farther_than_reference.p_value"
# Short columns of the audit table the report shows (one row per family; the figures are means over its sets,
# the structure test's p their median): label -> audit key (a dotted key of audit.json, or a column of
# `family_audits`). "real" is the real reference: real training frames against the same held-out frames.
AUDIT_DISPLAY = {
    "kept share": "kept share", "memorized share": "memorization.all_train.share_memorized",
    "structure p": STRUCTURE_P,
    "density": "realism.structure.synthetic_vs_holdout.density.mean",
    "density real": "realism.structure.real_train_vs_holdout.density.mean",
    "coverage": "realism.structure.synthetic_vs_holdout.coverage.mean",
    "coverage real": "realism.structure.real_train_vs_holdout.coverage.mean",
    "second opinion": "second opinion reached",
}  # the KIDs of both feature spaces are in synthetic.csv (`synthetic_table`)


def audit_display(audits: pd.DataFrame) -> pd.DataFrame:
    """The audit as the report shows it: one row per family, short columns, display labels (blank where an
    audit does not measure a figure). "reached realism" is the ultrasound encoder's criterion (the structure
    test's p above 0.05), "second opinion" the random-CNN KID rule's verdict, both as k of n sets."""
    families = family_audits(audits)
    if families.empty:
        return families
    families["kept share"] = families["kept by the gate"] / families["images"].where(families["images"] > 0)
    if STRUCTURE_P in audits.columns:
        medians = audits.groupby("family")[STRUCTURE_P].median()
        families[STRUCTURE_P] = families["family"].map(medians)
    table = pd.DataFrame({"family": [family_label(f) for f in families["family"]], "sets": families["sets"],
                          "reached realism": families["reached realism"]})
    for label, key in AUDIT_DISPLAY.items():
        if key in families.columns:
            values = families[key]
            table[label] = values.round(3) if pd.api.types.is_numeric_dtype(values) else values
    table["leakage ablation"] = families["leakage_ablation"].map({True: "yes", False: ""})
    return table
