"""RM evaluation metrics: RewardBench accuracy, MORE's ECE, ReMoDetect AUROC, Spearman (testtime_eval.md B1, B6)."""

from __future__ import annotations

from pathlib import Path

import pytest

from alignkit.errors import RewardError
from alignkit.rewards.evaluate import (
    auroc,
    calibration_errors,
    pairwise_accuracy,
    pairwise_calibration,
    reliability_diagram,
    rewardbench_sections,
    spearman,
)


def test_ece_worked_example_right_closed_bins() -> None:
    cal = calibration_errors([0.95, 0.85, 0.7, 0.3, 0.15], [1, 1, 0, 0, 1], n_bins=5)
    assert cal["ece"] == pytest.approx(0.41)
    assert cal["mce"] == pytest.approx(0.85)
    # p = 0.6 belongs to (0.4, 0.6], the third bin.
    edge = calibration_errors([0.6], [1], n_bins=5)
    assert edge["bins"][2]["count"] == 1 and edge["bins"][3]["count"] == 0


def test_pairwise_calibration_is_symmetrised() -> None:
    cal = pairwise_calibration([0.0], [0.0], n_bins=10)  # a 50/50 classifier is perfectly calibrated
    assert cal["ece"] == pytest.approx(0.0) and cal["n"] == 2
    cal = pairwise_calibration([2.0, 1.0], [0.0, 3.0], n_bins=5)
    assert cal["n"] == 4 and 0 < cal["ece"] < 1


def test_accuracy_strict_ties_and_categories() -> None:
    acc = pairwise_accuracy([1.0, 2.0, 0.5, 3.0], [0.0, 2.0, 1.0, 1.0], ["a", "a", "b", "b"])
    assert acc["accuracy"] == 0.5 and acc["ties"] == 1
    assert acc["by_category"] == {"a": {"accuracy": 0.5, "n": 2}, "b": {"accuracy": 0.5, "n": 2}}


def test_rewardbench_sections_use_fixed_counts() -> None:
    by = {"math-prm": {"accuracy": 1.0}, "hep-python": {"accuracy": 0.0}, "alpacaeval-easy": {"accuracy": 0.5}}
    s = rewardbench_sections(by)
    assert s["Reasoning"] == pytest.approx(984 / (984 + 164))
    assert s["Chat"] == 0.5 and s["overall"] == pytest.approx((s["Reasoning"] + 0.5) / 2)


def test_auroc_hand_computed_with_ties() -> None:
    # Positives {0.35, 0.8} vs negatives {0.1, 0.4}: 3 of 4 pairs ordered -> 0.75.
    assert auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == 0.75
    # One tie among four pairs counts half: (0.5 > 0.2), (0.5 = 0.5) -> 0.5, (0.9 > both) -> 3.5 / 4.
    assert auroc([0.2, 0.5, 0.5, 0.9], [0, 0, 1, 1]) == pytest.approx(0.875)
    assert auroc([1, 1, 1], [0, 1, 1]) == 0.5
    with pytest.raises(RewardError, match="both classes"):
        auroc([0.1, 0.2], [1, 1])


def test_spearman() -> None:
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)


def test_reliability_diagram_writes_png(tmp_path: Path) -> None:
    out = reliability_diagram(calibration_errors([0.9, 0.2, 0.6], [1, 0, 0], 5), tmp_path / "r.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
