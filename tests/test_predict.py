"""Prediction's test-time settings: scales, flip and sliding windows, checked against direct
computations with small models whose answers are known."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from segbench.checkpoint import save_checkpoint
from segbench.data.dataset import normalize
from segbench.errors import InputError
from segbench.models import build_model
from segbench.predict import SETTINGS_FILE, predict, sliding_probabilities, tta_probabilities, window_starts

CPU = torch.device("cpu")


def _image(height: int = 20, width: int = 30) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _pointwise() -> nn.Module:
    """A 1x1 convolution: each pixel's output depends on that pixel alone."""
    torch.manual_seed(0)
    return nn.Conv2d(3, 4, 1).eval()


def _contextual() -> nn.Module:
    """A 5x5 convolution: outputs depend on neighbours, so tiles and mirrors change them."""
    torch.manual_seed(0)
    return nn.Conv2d(3, 4, 5, padding=2).eval()


@pytest.mark.parametrize(
    ("length", "window", "stride", "starts"),
    [
        (10, 4, 3, [0, 3, 6]),  # 6 = 10 - 4: the grid ends exactly at the border
        (11, 4, 3, [0, 3, 6, 7]),  # the last window moves back from 9 to end at 11
        (3, 4, 3, [0]),  # shorter than the window: taken whole
        (4, 4, 3, [0]),
    ],
)
def test_window_starts_cover_the_input(length: int, window: int, stride: int, starts: list[int]) -> None:
    assert window_starts(length, window, stride) == starts


def test_sliding_windows_of_a_pointwise_model_equal_the_whole_image() -> None:
    x = normalize(_image())[None]
    with torch.inference_mode():
        whole = _pointwise()(x).softmax(1)
        tiled = sliding_probabilities(_pointwise(), x, window=8, overlap=1 / 3)
    torch.testing.assert_close(tiled, whole)


def test_sliding_windows_average_the_overlapping_tiles() -> None:
    """Width 12, window 8, overlap 1/2: tiles start at columns 0 and 4; columns 4-7
    are the mean of both tiles' outputs, the others come from one tile."""
    model = _contextual()
    x = normalize(_image(8, 12))[None]
    with torch.inference_mode():
        tiled = sliding_probabilities(model, x, window=8, overlap=0.5)
        left, right = model(x[..., :8]).softmax(1), model(x[..., 4:]).softmax(1)
    torch.testing.assert_close(tiled[..., :4], left[..., :4])
    torch.testing.assert_close(tiled[..., 4:8], (left[..., 4:] + right[..., :4]) / 2)
    torch.testing.assert_close(tiled[..., 8:], right[..., 4:])


def test_flip_averages_the_mirrored_prediction_mirrored_back() -> None:
    model, image = _contextual(), _image()
    x = normalize(image)[None]
    with torch.inference_mode():
        got = tta_probabilities(model, image, device=CPU, flip=True)
        expected = (model(x).softmax(1) + model(x.flip(-1)).softmax(1).flip(-1))[0] / 2
        plain = tta_probabilities(model, image, device=CPU)
    torch.testing.assert_close(got, expected)
    assert not torch.allclose(got, plain)  # the 5x5 model is not mirror-symmetric


def test_scales_of_a_constant_image_change_nothing_for_a_pointwise_model() -> None:
    image = np.full((16, 24, 3), 90, np.uint8)
    with torch.inference_mode():
        single = tta_probabilities(_pointwise(), image, device=CPU)
        multi = tta_probabilities(_pointwise(), image, device=CPU, scales=(0.5, 1.0, 1.75), flip=True)
    assert multi.shape == (4, 16, 24)
    torch.testing.assert_close(multi, single)


def test_scales_average_the_resized_predictions() -> None:
    model, image = _contextual(), _image(16, 24)
    x = normalize(image)[None]
    with torch.inference_mode():
        got = tta_probabilities(model, image, device=CPU, scales=(1.0, 0.5))
        half = model(nn.functional.interpolate(x, size=(8, 12), mode="bilinear")).softmax(1)
        expected = (model(x).softmax(1) + nn.functional.interpolate(half, size=(16, 24), mode="bilinear"))[0] / 2
    torch.testing.assert_close(got, expected)


def _checkpoint(path: Path) -> Path:
    model = build_model("deeplabv3_resnet50", num_classes=9, width=0.0625)
    save_checkpoint(path, model, name="deeplabv3_resnet50", num_classes=9, width=0.0625, options={}, meta={})
    return path


def test_predict_records_its_test_time_settings(tiny_dataset: Path, tmp_path: Path) -> None:
    checkpoint = _checkpoint(tmp_path / "checkpoint.pt")
    count = predict(
        data_root=tiny_dataset, split="val", checkpoint=checkpoint, pred_dir=tmp_path / "pred",
        probs_dir=tmp_path / "probs", device="cpu", scales=(0.75, 1.0), flip=True, window=32,
        options={"output_stride": 8},
    )
    assert count == 4 and len(list((tmp_path / "pred").glob("*.png"))) == 4
    settings = json.loads((tmp_path / "pred" / SETTINGS_FILE).read_text())
    assert settings == {
        "scales": [0.75, 1.0], "flip": True, "window": 32, "window_overlap": pytest.approx(1 / 3),
        "options": {"output_stride": 8},
    }


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"scales": (1.0, 0.0)}, "scales"), ({"window_overlap": 1.0}, "window"), ({"prob_stride": 0}, "prob_stride")],
)
def test_predict_refuses_bad_settings_before_writing(tiny_dataset: Path, tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        predict(
            data_root=tiny_dataset, split="val", checkpoint=tmp_path / "missing.pt", pred_dir=tmp_path / "pred",
            probs_dir=tmp_path / "probs", device="cpu", **kwargs,
        )
    assert not (tmp_path / "pred").exists()


def test_the_config_schema_defaults_are_predicts() -> None:
    """Each test-time setting is defined once: the workflow's defaults are predict()'s."""
    import inspect

    import yaml

    schema = yaml.safe_load((Path(__file__).parent.parent / "workflow/schemas/config.schema.yaml").read_text())
    settings = schema["properties"]["models"]["additionalProperties"]["properties"]["eval"]["properties"]
    defaults = {name: p.default for name, p in inspect.signature(predict).parameters.items()}
    assert settings["scales"]["default"] == list(defaults["scales"])
    assert settings["flip"]["default"] is defaults["flip"] and settings["window"]["default"] == defaults["window"]
    assert settings["window_overlap"]["default"] == pytest.approx(defaults["window_overlap"], abs=1e-4)


def _predict(data_root: Path, checkpoint: Path, out: Path) -> int:
    return predict(
        data_root=data_root, split="val", checkpoint=checkpoint, pred_dir=out / "pred", probs_dir=out / "probs",
        device="cpu",
    )


def test_predict_refuses_a_checkpoint_of_another_class_count(tiny_dataset: Path, tmp_path: Path) -> None:
    model = build_model("fcn32s", num_classes=5, width=0.0625)
    save_checkpoint(tmp_path / "five.pt", model, name="fcn32s", num_classes=5, width=0.0625, options={}, meta={})
    with pytest.raises(InputError, match=r"five\.pt: the model predicts 5 classes but the dataset .* has 9"):
        _predict(tiny_dataset, tmp_path / "five.pt", tmp_path)
    assert not (tmp_path / "pred").exists()


def test_predict_refuses_non_finite_probabilities(tiny_dataset: Path, tmp_path: Path) -> None:
    """Weights trained to NaN: their argmax would be written as all-background PNGs."""
    from segbench.data.voc import read_ids

    model = build_model("fcn32s", num_classes=9, width=0.0625)
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    save_checkpoint(tmp_path / "nan.pt", model, name="fcn32s", num_classes=9, width=0.0625, options={}, meta={})
    first = read_ids(tiny_dataset, "val")[0]
    with pytest.raises(InputError, match=rf"nan\.pt: the probabilities of image {first} are not finite"):
        _predict(tiny_dataset, tmp_path / "nan.pt", tmp_path)
    assert not (tmp_path / "pred").exists() and not (tmp_path / "probs").exists()


def test_predict_blames_the_dataset_for_an_image_of_another_size(tiny_dataset: Path, tmp_path: Path) -> None:
    """Otherwise the prediction (of the image's size) passes, and evaluate blames it for not fitting the mask."""
    import shutil

    from PIL import Image

    from segbench.data.voc import read_ids, voc_dir

    root = tmp_path / "data"
    shutil.copytree(tiny_dataset, root)
    image_id = read_ids(root, "val")[2]
    image_path = voc_dir(root) / "JPEGImages" / f"{image_id}.jpg"
    with Image.open(image_path) as image:
        image.resize((60, 48)).save(image_path)  # the masks are 64x48
    with pytest.raises(InputError, match=rf"{image_id}\.png: mask is 64x48 but image {image_id}\.jpg is 60x48"):
        _predict(root, _checkpoint(tmp_path / "checkpoint.pt"), tmp_path)
    assert not (tmp_path / "pred").exists()
