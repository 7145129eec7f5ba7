"""The fidelity page is generated, current, and every setting it lists maps to keys that exist."""
from __future__ import annotations

from lus_utils import fidelity
from lus_utils.config.profiles import load_profile


def test_committed_page_is_what_the_command_renders():
    assert fidelity.DOC_PATH.read_text(encoding="utf-8") == fidelity.render(), (
        "docs/fidelity.md is stale: run `python -m lus_utils.fidelity` and commit the page")


def test_every_mapped_key_exists_in_every_profile():
    for name in ("smoke", "quick", "full"):
        profile = load_profile(name)
        for setting in fidelity.SETTINGS:
            for key in setting.keys:
                fidelity.key_value(profile, key)  # raises AttributeError / KeyError / ImportError when gone


def test_every_difference_has_a_reason_and_every_setting_a_verdict():
    full = load_profile("full")
    for setting in fidelity.SETTINGS:
        assert setting.source and setting.original, setting.name
        assert setting.keys or setting.ours, f"{setting.name}: no key and no description of ours"
        if setting.original_value is not fidelity._UNSET:
            assert len(setting.keys) == 1, f"{setting.name}: original_value compares with exactly one key"
        if not fidelity.full_matches(setting, full):
            assert setting.why, f"{setting.name}: full differs from the original study without a reason"


def test_verdict_follows_the_profile(tmp_path):
    full = load_profile("full")
    lr = next(s for s in fidelity.SETTINGS if s.keys == ("train.lr",))
    assert fidelity.full_matches(lr, full)
    full.sections["train"].lr = 1e-3
    assert not fidelity.full_matches(lr, full)
    assert "differs: `train.lr` = `0.001`" in fidelity.render({"full": full, "quick": load_profile("quick")})


def test_main_writes_the_page(tmp_path):
    target = tmp_path / "fidelity.md"
    assert fidelity.main(["--out", str(target)]) == 0
    assert target.read_text(encoding="utf-8") == fidelity.render()
