"""The feature spaces the audit measures realism in, and the images as the audit reads them.

Fixed across conditions, so that KID and the two-sample test compare: a seeded random CNN by default
(`realism.RandomCNN`); Inception or DINOv2 where their weights are on disk; the baseline classifier's
penultimate layer or raw pixels on request.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from lus_utils.generate import realism
from lus_utils.images import load_image, load_images

NO_FEATURES = "none (no baseline classifier run given)"
PIXEL_FEATURE_SIZE = 16  # "pixels" feature space: grey images at 16 x 16, 256 numbers
INCEPTION_SIZE = 299
DINOV2_MODEL = "facebook/dinov2-small"


def load_grey(paths: list[str], size: int) -> np.ndarray:
    """Grey uint8 images (N, size, size)."""
    return load_images(paths, size, grayscale=True)


def load_rgb_nchw(paths: list[str], size: int) -> np.ndarray:
    """uint8 RGB images (N, 3, size, size): what the classifiers read."""
    return load_images(paths, size).transpose(0, 3, 1, 2).copy()


class FeatureExtractorUnavailable(RuntimeError):
    """The chosen feature space cannot be built here (weights not on disk, or no classifier run)."""


def feature_function(kind: str, feature_run_dir: str = "", batch_size: int = 32):
    """A function paths -> features (N, D) for `kind`, and the feature space's description.

    classifier: `lus_utils.classify.training.load_run_model(run_dir)` then `lus_utils.classify.models.extract_features`;
    inception: torchvision Inception-v3 pool features (ImageNet weights from torchvision's cache);
    dinov2: transformers `facebook/dinov2-small` CLS features (Hugging Face cache);
    pixels: grey images at 16 x 16 (a crude space that needs no weights);
    random_cnn: `realism.RandomCNN` (seeded random weights, the default: fixed across conditions).
    Returns (None, NO_FEATURES) for `classifier` without a run folder.
    """
    if kind == "random_cnn":
        network = realism.RandomCNN()

        def random_cnn(paths: list[str]) -> np.ndarray:
            return network(load_grey(paths, realism.FEATURE_SIZE))

        return random_cnn, network.description
    if kind == "pixels":
        def pixels(paths: list[str]) -> np.ndarray:
            return load_grey(paths, PIXEL_FEATURE_SIZE).reshape(len(paths), -1).astype(np.float64) / 255.0

        return pixels, f"pixels (grey {PIXEL_FEATURE_SIZE}x{PIXEL_FEATURE_SIZE}, no learned features)"
    if kind == "classifier":
        if not feature_run_dir:
            return None, NO_FEATURES
        # Sideways, into the classifier's layer, and lazily so that no other feature space loads it: issue 21
        # replaces this feature space (tests/test_layers.py allows this import by name until then).
        from lus_utils.classify.models import extract_features  # lazy: the classifier feature space only (a known layer exception)
        from lus_utils.classify.training import load_run_model

        model, _, image_size = load_run_model(Path(feature_run_dir))

        def classifier(paths: list[str]) -> np.ndarray:
            return np.asarray(extract_features(model, load_rgb_nchw(paths, image_size), batch_size))

        return classifier, f"baseline classifier penultimate layer ({Path(feature_run_dir).name}, {image_size} px)"
    if kind == "inception":
        return _inception_features(batch_size), "Inception-v3 pool3 (ImageNet weights)"
    if kind == "dinov2":
        return _dinov2_features(batch_size), f"DINOv2 CLS ({DINOV2_MODEL})"
    raise ValueError(f"unknown feature_extractor '{kind}'; known: random_cnn, classifier, inception, dinov2, pixels")


def _inception_features(batch_size: int):
    # Lazy: the audit imports without torch, and only this feature space needs torchvision's models.
    import torch
    from torchvision.models import Inception_V3_Weights, inception_v3  # lazy: the inception feature space only

    try:
        model = inception_v3(weights=Inception_V3_Weights.IMAGENET1K_V1)
    except Exception as err:  # torchvision raises URLError/RuntimeError variants when it cannot download
        raise FeatureExtractorUnavailable(
            f"Inception-v3 ImageNet weights are not available ({type(err).__name__}: {err}). torchvision keeps them "
            "in $TORCH_HOME/hub/checkpoints; download them once online, or use feature_extractor 'classifier' "
            "(with feature_run_dir) or 'pixels'.") from err
    model.fc = torch.nn.Identity()
    model.eval()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

    @torch.no_grad()
    def inception(paths: list[str]) -> np.ndarray:
        out = []
        for start in range(0, len(paths), batch_size):
            x = torch.from_numpy(load_rgb_nchw(paths[start:start + batch_size], INCEPTION_SIZE)).float() / 255
            out.append(model((x - mean) / std).numpy())
        return np.concatenate(out)

    return inception


def _dinov2_features(batch_size: int):
    # Lazy: the audit imports without torch, and only this feature space needs transformers' models.
    import torch
    from transformers import AutoImageProcessor, AutoModel  # lazy: the dinov2 feature space only

    try:
        processor = AutoImageProcessor.from_pretrained(DINOV2_MODEL)
        model = AutoModel.from_pretrained(DINOV2_MODEL).eval()
    except Exception as err:  # transformers raises OSError (offline) or HTTP errors
        raise FeatureExtractorUnavailable(
            f"DINOv2 weights '{DINOV2_MODEL}' are not available ({type(err).__name__}: {err}). Download them once "
            "online into the Hugging Face cache, or use feature_extractor 'classifier' (with feature_run_dir) "
            "or 'pixels'.") from err

    @torch.no_grad()
    def dinov2(paths: list[str]) -> np.ndarray:
        out = []
        for start in range(0, len(paths), batch_size):
            images = [load_image(p) for p in paths[start:start + batch_size]]
            inputs = processor(images=images, return_tensors="pt")
            out.append(model(**inputs).last_hidden_state[:, 0].numpy())
        return np.concatenate(out)

    return dinov2
