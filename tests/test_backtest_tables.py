"""The backtest's per-decile and per-group tables, and the calibration-to-truth figures of
a cut, on numbers small enough to check by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from riskmodel.modeling.backtest import cut_figures, decile_table, group_table


def test_deciles_are_equal_groups_by_pd_lowest_first() -> None:
    pd_ = np.array([0.20, 0.01, 0.15, 0.02, 0.10, 0.05, 0.03, 0.04, 0.06, 0.08,
                    0.07, 0.09, 0.11, 0.12, 0.13, 0.14, 0.16, 0.17, 0.18, 0.19])
    y = (pd_ >= 0.15).astype(float)  # the six highest PDs went bad
    truth = pd_ * 2
    t = decile_table(y, pd_, truth)
    assert t["decile"].tolist() == list(range(1, 11))
    assert t["buyers"].tolist() == [2] * 10
    assert t["mean_pd"].iloc[0] == pytest.approx((0.01 + 0.02) / 2)
    assert t["mean_pd"].iloc[-1] == pytest.approx((0.19 + 0.20) / 2)
    assert t["bad_rate"].tolist() == [0.0] * 7 + [1.0] * 3
    assert t["pd_to_true"].tolist() == pytest.approx([0.5] * 10)


def test_tied_pds_still_make_equal_deciles() -> None:
    t = decile_table(np.zeros(30), np.full(30, 0.05))
    assert t["buyers"].tolist() == [3] * 10
    assert "pd_to_true" not in t.columns


def test_worst_decile_and_ece_excess_of_a_cut() -> None:
    pd_ = np.repeat([0.01, 0.1], 50)
    truth = np.repeat([0.02, 0.1], 50)  # the low half is half its true PD
    y = np.zeros(100)
    y[[0, 50, 51, 52, 53, 54]] = 1
    fig = cut_figures(y, pd_, truth, bins=10)
    assert fig["decile_worst_pd_to_true"] == pytest.approx(0.5)
    # by hand: two PD bins; low: mean PD 0.01, rate 1/50; high: mean PD 0.1, rate 5/50
    assert fig["ece"] == pytest.approx(0.5 * abs(0.01 - 0.02) + 0.5 * abs(0.1 - 0.1))
    # the truth's bins: low 0.02 against 1/50, high 0.1 against 5/50: no error at all
    assert fig["oracle_ece"] == pytest.approx(0.0, abs=1e-12)
    assert fig["ece_excess"] == pytest.approx(0.005)
    assert (fig["buyers"], fig["bads"]) == (100, 6)
    assert fig["bad_rate"] == pytest.approx(0.06)
    assert fig["mean_pd"] == pytest.approx(0.055)
    assert fig["pd_to_observed"] == pytest.approx(0.055 / 0.06)
    assert fig["mean_pd_true"] == pytest.approx(0.06)
    assert fig["pd_to_true"] == pytest.approx(0.055 / 0.06)
    # AUC by hand: 6 bads x 94 goods; each bad at 0.1 beats 49 goods and ties 45, the bad
    # at 0.01 ties 49; the truth orders the buyers as the PD does, so the same AUC
    auc = (5 * (49 + 45 / 2) + 49 / 2) / (6 * 94)
    assert fig["auc"] == pytest.approx(auc)
    assert fig["oracle_auc"] == pytest.approx(auc)
    assert fig["auc_to_oracle"] == pytest.approx(1.0)


def test_a_cut_without_both_outcomes_has_no_auc() -> None:
    fig = cut_figures(np.zeros(20), np.full(20, 0.05), np.full(20, 0.1))
    assert fig["bads"] == 0 and fig["bad_rate"] == 0.0
    for k in ("auc", "oracle_auc", "auc_to_oracle", "pd_to_observed"):
        assert np.isnan(fig[k]), k
    assert fig["pd_to_true"] == pytest.approx(0.5)
    assert fig["ece"] == pytest.approx(0.05)
    assert fig["oracle_ece"] == pytest.approx(0.1)
    assert fig["ece_excess"] == pytest.approx(-0.05)
    # without the truth, none of the truth's figures
    plain = cut_figures(np.array([0.0, 1.0]), np.array([0.1, 0.9]))
    assert plain["auc"] == pytest.approx(1.0)
    for k in ("oracle_auc", "mean_pd_true", "pd_to_true", "oracle_ece", "ece_excess",
              "decile_worst_pd_to_true"):
        assert np.isnan(plain[k]), k


def test_group_table_per_industry() -> None:
    frame = pd.DataFrame({
        "industry": ["C", "C", "C", "C", "F", "F"],
        "bad": [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
        "pd": [0.4, 0.1, 0.2, 0.1, 0.5, 0.5],
        "pd_true": [0.2, 0.2, 0.2, 0.2, 0.25, 0.25],
    })
    t = group_table(frame, "industry").set_index("industry")
    assert t.loc["C", "buyers"] == 4 and t.loc["F", "buyers"] == 2
    assert t.loc["C", "bad_rate"] == pytest.approx(0.25)
    assert t.loc["C", "mean_pd"] == pytest.approx(0.2)
    assert t.loc["C", "pd_to_observed"] == pytest.approx(0.8)
    assert t.loc["C", "auc"] == pytest.approx(1.0)  # the bad has the highest PD
    assert t.loc["F", "auc"] == pytest.approx(0.5)  # a tie
    assert t.loc["F", "pd_to_true"] == pytest.approx(2.0)
    assert t.loc["C", "pd_to_true"] == pytest.approx(1.0)
    assert t.loc["C", "bads"] == 1 and t.loc["F", "bads"] == 1


def test_oracle_auc_is_that_of_the_truth() -> None:
    y = np.array([0.0, 1.0, 0.0, 1.0])
    fig = cut_figures(y, np.array([0.1, 0.2, 0.3, 0.4]), np.array([0.1, 0.4, 0.1, 0.4]))
    assert fig["auc"] == pytest.approx(0.75)  # the bad at 0.2 is below the good at 0.3
    assert fig["oracle_auc"] == pytest.approx(1.0)
    assert fig["auc_to_oracle"] == pytest.approx(0.75)
