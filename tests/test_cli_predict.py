"""segbench.cli.predict: the test-time flags reach segbench.predict.predict."""

from __future__ import annotations

import pytest

from segbench.cli import main


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, object]]:
    import segbench.predict

    seen: list[dict[str, object]] = []
    monkeypatch.setattr(segbench.predict, "predict", lambda **kwargs: seen.append(kwargs) or 0)
    return seen


BASE = ["predict", "--data", "d", "--checkpoint", "c.pt", "--pred-dir", "p", "--probs-dir", "q"]


def test_defaults_are_single_scale_whole_images(calls: list[dict[str, object]]) -> None:
    assert main(BASE) == 0
    (kwargs,) = calls
    assert kwargs["scales"] == (1.0,) and kwargs["flip"] is False
    assert kwargs["window"] == 0 and kwargs["window_overlap"] == pytest.approx(1 / 3)


def test_scales_flip_and_windows(calls: list[dict[str, object]]) -> None:
    argv = [*BASE, "--scales", "0.5", "1", "1.75", "--flip", "--window", "473", "--window-overlap", "0.25"]
    assert main(argv) == 0
    (kwargs,) = calls
    assert kwargs["scales"] == (0.5, 1.0, 1.75) and kwargs["flip"] is True
    assert kwargs["window"] == 473 and kwargs["window_overlap"] == 0.25
