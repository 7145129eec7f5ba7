"""The classifier's stem options on tiny inputs (the grey and small-input stems: shapes, determinism, the
default unchanged) and fit's per-epoch hook, which the learning-curve benchmark reads."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from lus_utils.classify import loop, models
from lus_utils.classify.run_data import RunData
from lus_utils.config.classify import TrainParams
from lus_utils.vocabulary import Split


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread, as the study trains: on a shared 2-core machine two threads wait on each other."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def built(seed: int = 0, **kwargs) -> torch.nn.Module:
    torch.manual_seed(seed)
    return models.build_model("resnet18", 3, 32, **kwargs).eval()


def test_default_build_is_timms_resnet18() -> None:
    import timm

    torch.manual_seed(0)
    reference = timm.create_model("resnet18", num_classes=3)
    model = built()
    assert model.conv1.kernel_size == (7, 7) and model.conv1.stride == (2, 2)
    assert isinstance(model.maxpool, torch.nn.MaxPool2d)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), reference.state_dict().values()))
    assert models.input_channels(model) == 3 and models.normalisation(model)[0] == (0.485, 0.456, 0.406)


def test_small_input_stem_keeps_resolution_and_is_seeded() -> None:
    model = built(small_input=True)
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert isinstance(model.maxpool, torch.nn.Identity)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert model.forward_features(x).shape[-2:] == (4, 4)  # the standard stem leaves 1x1 at 32 px
        assert built().forward_features(x).shape[-2:] == (1, 1)
        assert model(x).shape == (2, 3)
        assert torch.equal(model(x), built(small_input=True)(x))
        assert not torch.equal(model(x), built(seed=1, small_input=True)(x))
    assert [i["reduction"] for i in model.feature_info] == [1, 1, 2, 4, 8]


def test_grey_stem_takes_luma_of_rgb_frames() -> None:
    model = built(in_chans=1)
    assert models.input_channels(model) == 1 and model.conv1.in_channels == 1
    mean, std = models.normalisation(model)
    assert mean == pytest.approx((0.449,)) and std == pytest.approx((0.226,))
    rgb = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    grey = models.grey_frames(rgb)
    expected = np.clip(np.rint(rgb.numpy().astype(np.float64).transpose(0, 2, 3, 1) @ np.array(models.LUMA)), 0, 255)
    assert grey.shape == (2, 1, 8, 8) and grey.dtype == torch.uint8
    assert np.abs(grey[:, 0].numpy().astype(int) - expected).max() <= 1  # float32 vs float64 at .5 ties
    copies = rgb[:, :1].expand(-1, 3, -1, -1)  # a grey frame stored as three equal channels
    assert torch.equal(models.grey_frames(copies), rgb[:, :1])
    assert torch.equal(models.to_input(model, copies), models.to_input(model, rgb[:, :1]))
    with torch.no_grad():
        assert model(models.to_input(model, rgb)).shape == (2, 3)


def test_stem_options_refuse_what_they_cannot_build() -> None:
    with pytest.raises(ValueError, match="not one"):
        models.build_model("vit_tiny_patch16_224", 3, 32, small_input=True)
    with pytest.raises(ValueError, match="in_chans"):
        models.build_model("resnet18", 3, 32, in_chans=2)


def tiny_run(n_train: int = 13, n_val: int = 6, size: int = 16) -> tuple[RunData, torch.Tensor]:
    """Three classes told apart by brightness, as uint8 RGB frames, with train and val parts."""
    rng = np.random.default_rng(0)
    labels = [["covid", "pneumonia", "regular"][i % 3] for i in range(n_train + n_val)]
    levels = {"covid": 40, "pneumonia": 120, "regular": 200}
    images = np.stack([np.clip(rng.normal(levels[c], 30, (3, size, size)), 0, 255) for c in labels]).astype(np.uint8)
    table = pd.DataFrame({"label": labels, "part": ["train"] * n_train + ["val"] * n_val,
                          "synthetic": False, "oversampled": False})
    return RunData(["covid", "pneumonia", "regular"], Split(fold=0), "pneumonia", table), torch.from_numpy(images)


@pytest.mark.parametrize("in_chans", [3, 1])
def test_fit_calls_on_epoch_after_each_validation_and_repeats(in_chans: int) -> None:
    data, images = tiny_run()
    train = TrainParams(image_size=16, epochs=2, batch_size=6, lr=1e-3, patience=5)

    def once() -> tuple[list[dict], torch.Tensor]:
        torch.manual_seed(0)
        model = models.build_model("resnet18", 3, 16, in_chans=in_chans)  # a grey stem: fit turns the frames grey
        seen: list[dict] = []
        result = loop.fit(model, data, images, train, "none", 0, augment=True,
                          on_epoch=lambda row, m: seen.append({**row, "training": m.training}))
        assert [r["val_loss"] for r in seen] == result.history["val_loss"].tolist()
        return seen, model.fc.weight.detach().clone()

    seen, weights = once()
    assert [r["epoch"] for r in seen] == [1, 2] and not any(r["training"] for r in seen)  # after validation
    again, weights_again = once()
    assert [r["val_loss"] for r in again] == [r["val_loss"] for r in seen] and torch.equal(weights, weights_again)
