"""Validation statistics of ``riskmodel.modeling.evaluation`` against numbers worked out by hand
or from the textbook formula, written out here independently of the module: KS, ECE (equal-count
bins of the predicted PD), PSI (quantile bins of the expected values, a bin for missing values,
empty bins floored at 1e-4), the grade back-test (one-sided binomial and Jeffreys tests, the
two-sided 99.9% binomial band, the traffic light) and the one-factor Vasicek band."""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from riskmodel.modeling.evaluation import (
    calibration_table,
    discrimination,
    ece,
    evaluate,
    grade_counts,
    grade_table,
    ks_statistic,
    psi,
    vasicek_band,
)
from riskmodel.modeling.masterscale import MasterScale

EPS = 1e-4  # the PSI floor of an empty bin
N01 = NormalDist()


# --------------------------------------------------------------------------- independent maths


def binom_pmf(j: int, n: int, p: float) -> float:
    return math.comb(n, j) * p**j * (1 - p) ** (n - j)


def binom_tail(k: int, n: int, p: float) -> float:
    """P(X >= k), X ~ Bin(n, p), summed term by term."""
    return math.fsum(binom_pmf(j, n, p) for j in range(k, n + 1))


def binom_quantile(q: float, n: int, p: float) -> int:
    """Smallest j with P(X <= j) >= q."""
    cdf = 0.0
    for j in range(n + 1):
        cdf += binom_pmf(j, n, p)
        if cdf >= q:
            return j
    return n


def vasicek_quantile(pd_: float, rho: float, q: float) -> float:
    """q-quantile of a grade's one-year default rate in the one-factor model:
    N((N^-1(PD) + sqrt(rho) N^-1(q)) / sqrt(1 - rho))."""
    return N01.cdf((N01.inv_cdf(pd_) + math.sqrt(rho) * N01.inv_cdf(q)) / math.sqrt(1 - rho))


def psi_term(actual: float, expected: float) -> float:
    a, e = max(actual, EPS), max(expected, EPS)
    return (a - e) * math.log(a / e)


# --------------------------------------------------------------------------- KS


def ks_brute_force(y: np.ndarray, p: np.ndarray) -> float:
    """Largest share of goods minus share of bads at or below a cut, over every cut (and the
    cut below every score, 0): the gap in the direction of a PD, where bads score high."""
    bad, good = p[y == 1], p[y == 0]
    return max([0.0, *(np.mean(good <= t) - np.mean(bad <= t) for t in np.unique(p))])


def test_ks_by_hand() -> None:
    # goods at .1 .2 .4, bads at .3 .5 .6: cutting at .2 leaves 2/3 of the goods and no bad
    # below; at .4 all goods and 1/3 of the bads: the largest gap is 2/3
    y = np.array([0, 0, 1, 0, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    assert ks_statistic(y, p) == pytest.approx(2 / 3)
    # perfectly separated: 1; every bad below every good is KS 0 in this one-sided form
    assert ks_statistic(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.3, 0.4])) == 1.0
    assert ks_statistic(np.array([1, 1, 0, 0]), np.array([0.1, 0.2, 0.3, 0.4])) == 0.0


def test_ks_with_ties_equals_the_brute_force() -> None:
    rng = np.random.default_rng(4)
    for _ in range(30):
        n = int(rng.integers(4, 40))
        y = rng.integers(0, 2, n)
        if y.min() == y.max():
            continue
        p = rng.integers(0, 6, n) / 10 + 0.3 * y * rng.random(n).round(1)  # many ties
        assert ks_statistic(y, p) == pytest.approx(ks_brute_force(y, p), abs=1e-12)


# --------------------------------------------------------------------------- ECE

# ten predictions, sorted: .05 .10 .15 .20 | .30 .40 .50 | .60 .80 .90 (three equal-count bins
# of 4, 3, 3 rows, the first bin taking the remainder)
P10 = np.array([0.9, 0.1, 0.2, 0.05, 0.3, 0.5, 0.6, 0.15, 0.8, 0.4])
Y10 = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
# bin 1: mean PD .5/4 = .125, bads 1/4 (.15)           -> |.125 - .25|  = .125, weight .4
# bin 2: mean PD 1.2/3 = .4,  bads 2/3 (.4, .5)        -> |.4 - 2/3|    = 4/15, weight .3
# bin 3: mean PD 2.3/3,       bads 2/3 (.6, .8)        -> |2.3/3 - 2/3| = .1,   weight .3
ECE10 = 0.4 * 0.125 + 0.3 * 4 / 15 + 0.3 * 0.1  # = .16


def test_ece_by_hand() -> None:
    assert ece(Y10, P10, bins=3) == pytest.approx(ECE10)
    table = calibration_table(Y10, P10, bins=3)
    assert table["n"].tolist() == [4, 3, 3]
    assert table["mean_pd"].tolist() == pytest.approx([0.125, 0.4, 2.3 / 3])
    assert table["observed_rate"].tolist() == pytest.approx([0.25, 2 / 3, 2 / 3])


def test_ece_with_more_bins_than_rows_is_the_mean_absolute_error() -> None:
    p = np.array([0.1, 0.7, 0.3, 0.9, 0.2, 0.4])
    y = np.array([0, 1, 1, 0, 0, 0])
    # one row per bin: |p - y| averaged = (.1 + .3 + .7 + .9 + .2 + .4) / 6
    assert ece(y, p, bins=10) == pytest.approx(2.6 / 6)
    assert len(calibration_table(y, p, bins=10)) == 6


def test_ece_of_a_perfectly_calibrated_book_is_zero() -> None:
    # two bins of four: PD .25 with one bad in four, PD .75 with three
    p = np.array([0.25] * 4 + [0.75] * 4)
    y = np.array([1, 0, 0, 0, 1, 1, 0, 1])
    assert ece(y, p, bins=2) == pytest.approx(0.0, abs=1e-15)


def test_ece_keeps_tied_predictions_in_one_bin_whatever_the_row_order() -> None:
    """Six rows, two bins: four tie at PD .2 (one bad), two at .6 (one bad). Equal-count bins
    would cut the tie at the third row, and which .2 rows land in which bin (so the ECE)
    would depend on the row order; the tie stays whole: bins {4 x .2}, {2 x .6}."""
    p = np.array([0.2, 0.2, 0.2, 0.2, 0.6, 0.6])
    y = np.array([1, 0, 0, 0, 1, 0])
    expected = 4 / 6 * abs(0.2 - 0.25) + 2 / 6 * abs(0.6 - 0.5)
    rng = np.random.default_rng(0)
    for _ in range(20):
        perm = rng.permutation(6)
        assert ece(y[perm], p[perm], bins=2) == pytest.approx(expected)
    table = calibration_table(y, p, bins=2)
    assert table["n"].tolist() == [4, 2]


def test_ece_reads_series_by_position_not_by_index_label() -> None:
    """pandas Series with a shuffled index (a test split) give the same ECE as arrays."""
    index = np.random.default_rng(0).permutation(10)
    got = ece(pd.Series(Y10, index=index), pd.Series(P10, index=index), bins=3)
    assert got == pytest.approx(ECE10)


def test_discrimination_by_hand() -> None:
    y = np.array([0, 0, 1, 0, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    m = discrimination(y, p, bins=2)
    # 9 bad-good pairs, 8 ordered right (.3 < .4 is the one wrong pair): AUC 8/9
    assert m["auc"] == pytest.approx(8 / 9)
    assert m["gini"] == pytest.approx(7 / 9)
    assert m["ks"] == pytest.approx(2 / 3)
    assert m["brier"] == pytest.approx((0.01 + 0.04 + 0.49 + 0.16 + 0.25 + 0.16) / 6)
    assert m["log_loss"] == pytest.approx(
        -(math.log(0.9) + math.log(0.8) + math.log(0.3) + math.log(0.6) + math.log(0.5)
          + math.log(0.6)) / 6)
    # two bins: {.1 .2 .3} one bad, mean .2; {.4 .5 .6} two bads, mean .5
    assert m["ece"] == pytest.approx(0.5 * abs(0.2 - 1 / 3) + 0.5 * abs(0.5 - 2 / 3))
    assert (m["mean_pd"], m["bad_rate"], m["n"]) == (pytest.approx(0.35), 0.5, 6.0)


# --------------------------------------------------------------------------- PSI


def test_psi_numeric_by_hand_with_an_empty_missing_bin() -> None:
    # expected 1..8, four bins: edges at the 25/50/75% quantiles 2.75, 4.5, 6.25, so each bin
    # holds a quarter: {1,2} {3,4} {5,6} {7,8}; no missing value, so its bin is empty (1e-4)
    expected = pd.Series([1, 2, 3, 4, 5, 6, 7, 8], dtype=float)
    # actual: {1} {3,4} {} {7,8,9,10} and one missing -> 1/8, 2/8, 0, 4/8, 1/8
    actual = pd.Series([1, 3, 4, 7, 8, 9, 10, np.nan], dtype=float)
    want = (psi_term(1 / 8, 1 / 4) + psi_term(2 / 8, 1 / 4) + psi_term(0, 1 / 4)
            + psi_term(4 / 8, 1 / 4) + psi_term(1 / 8, 0))
    assert psi(expected, actual, bins=4) == pytest.approx(want)
    # the same distribution: 0; swapping the roles changes the value (not symmetric in floors)
    assert psi(expected, expected.sample(frac=1.0, random_state=1), bins=4) == 0.0


def test_psi_value_on_an_edge_goes_to_the_upper_bin() -> None:
    # expected 1..5, four bins: edges 2, 3, 4 -> {1} {2} {3} {4,5}: shares .2 .2 .2 .4
    expected = pd.Series([1.0, 2.0, 3.0, 4.0, 5.0])
    actual = pd.Series([2.0, 2.0, 3.0, 3.0])  # -> 0, .5, .5, 0
    want = psi_term(0, 0.2) + psi_term(0.5, 0.2) + psi_term(0.5, 0.2) + psi_term(0, 0.4)
    assert psi(expected, actual, bins=4) == pytest.approx(want)


def test_psi_constant_expected_has_one_edge() -> None:
    # every expected value 5: the quantile edges collapse to one, 5: bins (<5) and (>=5)
    expected = pd.Series([5.0] * 6)
    actual = pd.Series([4.0, 5.0, 6.0])
    want = psi_term(1 / 3, 0) + psi_term(2 / 3, 1)
    assert psi(expected, actual, bins=10) == pytest.approx(want)


def test_psi_categorical_by_hand() -> None:
    expected = pd.Series(["a", "a", "b", None], dtype=object)
    actual = pd.Series(["a", "b", "b", "c", "c", None, None, None], dtype=object)
    # categories a, b, c, missing: expected .5 .25 0 .25; actual 1/8 2/8 2/8 3/8
    want = (psi_term(1 / 8, 0.5) + psi_term(2 / 8, 0.25) + psi_term(2 / 8, 0)
            + psi_term(3 / 8, 0.25))
    assert psi(expected, actual) == pytest.approx(want)


def test_psi_all_missing_expected() -> None:
    expected = pd.Series([np.nan, np.nan])
    actual = pd.Series([1.0, np.nan, 2.0, 3.0])
    # no edges: one bin of values (expected 0, actual 3/4) and the missing bin (1, 1/4)
    assert psi(expected, actual) == pytest.approx(psi_term(0.75, 0) + psi_term(0.25, 1))


# --------------------------------------------------------------------------- Vasicek band


@pytest.mark.parametrize(("pd_", "rho"), [(0.01, 0.12), (0.002, 0.24), (0.2, 0.03)])
def test_vasicek_band_is_the_one_factor_quantile(pd_: float, rho: float) -> None:
    lo, hi = vasicek_band(pd_, rho)  # default q = .999, two-sided: .05% in each tail
    assert lo == pytest.approx(vasicek_quantile(pd_, rho, 0.0005), rel=1e-9)
    assert hi == pytest.approx(vasicek_quantile(pd_, rho, 0.9995), rel=1e-9)
    assert lo < pd_ < hi
    lo90, hi90 = vasicek_band(pd_, rho, q=0.9)
    assert lo90 == pytest.approx(vasicek_quantile(pd_, rho, 0.05), rel=1e-9)
    assert hi90 == pytest.approx(vasicek_quantile(pd_, rho, 0.95), rel=1e-9)


def test_vasicek_band_worked_example() -> None:
    # PD 1%, rho .12: N^-1(.01) = -2.326348, N^-1(.9995) = 3.290527, sqrt(.12) = .346410,
    # sqrt(.88) = .938083: upper N((-2.326348 + 1.139873) / .938083) = N(-1.264789) = .10297
    _, hi = vasicek_band(0.01, 0.12)
    assert hi == pytest.approx(0.10297, abs=5e-5)


def test_vasicek_band_without_correlation_is_the_pd() -> None:
    assert vasicek_band(0.03, 0.0) == (0.03, 0.03)


# --------------------------------------------------------------------------- grade back-test

SCALE = MasterScale([0.0015, 0.003, 0.006, 0.012, 0.024, 0.048, 0.096, 0.19, 0.35, 1.0])
# grade -> (PDs of its rows, number of bads)
BOOK = {
    "4": ([0.008] * 100 + [0.012] * 100, 2),  # mean PD 1%: 2 bads in 200, expected
    "5": ([0.02] * 400, 20),                  # 2% PD, 5% observed: far too many bads
    "7": ([0.07] * 50, 8),                    # 7% PD, 16% observed: suspicious
    "9": ([0.25] * 20, 0),                    # no bad at all
}


def _book() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y, p, g = [], [], []
    for grade, (pds, bads) in BOOK.items():
        p += pds
        y += [1.0] * bads + [0.0] * (len(pds) - bads)
        g += [grade] * len(pds)
    return np.array(y), np.array(p), np.array(g)


def _expected_row(grade: str, rho: float) -> dict:
    pds, k = BOOK[grade]
    n, mp = len(pds), float(np.mean(pds))
    binom_p = binom_tail(k, n, mp)
    lo, hi = binom_quantile(0.0005, n, mp), binom_quantile(0.9995, n, mp)
    light = "green" if binom_p >= 0.05 else "yellow" if binom_p >= 0.001 else "red"
    c_lo = binom_quantile(0.0005, n, vasicek_quantile(mp, rho, 0.0005)) / n
    c_hi = binom_quantile(0.9995, n, vasicek_quantile(mp, rho, 0.9995)) / n
    return {"buyers": n, "bads": k, "mean_pd": mp, "observed_rate": k / n,
            "binomial_p": binom_p,
            # Jeffreys: posterior of the default rate under the Beta(1/2, 1/2) prior is
            # Beta(k + 1/2, n - k + 1/2); the p-value is its mass below the grade's PD
            "jeffreys_p": stats.beta(k + 0.5, n - k + 0.5).cdf(mp),
            "light": light, "band_999_lower": lo / n, "band_999_upper": hi / n,
            "inside_999": lo <= k <= hi, "band_999_corr_lower": c_lo,
            "band_999_corr_upper": c_hi, "inside_999_corr": c_lo <= k / n <= c_hi}


def test_grade_table_by_hand() -> None:
    y, p, g = _book()
    rho = 0.12
    table = grade_table(y, p, g, SCALE, asset_correlation=rho).set_index("grade")
    assert table.index.tolist() == SCALE.grades
    for grade in BOOK:
        row, want = table.loc[grade], _expected_row(grade, rho)
        for key, value in want.items():
            if isinstance(value, float):
                assert row[key] == pytest.approx(value, rel=1e-9, abs=1e-15), (grade, key)
            else:
                assert row[key] == value, (grade, key)
    # the chosen book reaches every branch: each light, inside and outside the band
    assert set(table.loc[list(BOOK), "light"]) == {"green", "yellow", "red"}
    assert set(table.loc[list(BOOK), "inside_999"]) == {True, False}
    # grade 5 (20 bads where 8 are expected of 400) is outside the independent band but
    # inside the band that allows for default correlation
    assert not table.loc["5", "inside_999"] and table.loc["5", "inside_999_corr"]
    # grades without buyers: counted as 0, no statistics
    empty = table.drop(index=list(BOOK))
    assert (empty["buyers"] == 0).all() and empty["mean_pd"].isna().all()


def test_grade_table_worked_numbers() -> None:
    """A few of the numbers above written out: 2 bads in 200 at PD 1% is
    1 - .99^200 - 200 * .01 * .99^199 = .59535; 0 bads: P(X >= 0) = 1."""
    y, p, g = _book()
    table = grade_table(y, p, g, SCALE).set_index("grade")
    assert table.loc["4", "binomial_p"] == pytest.approx(
        1 - 0.99**200 - 200 * 0.01 * 0.99**199, rel=1e-12)
    assert table.loc["4", "binomial_p"] == pytest.approx(0.595354, abs=1e-6)
    assert table.loc["9", "binomial_p"] == 1.0
    # Jeffreys with no bad: Beta(1/2, 20.5) below .25, almost all of its mass
    assert table.loc["9", "jeffreys_p"] == pytest.approx(stats.beta.cdf(0.25, 0.5, 20.5))
    assert table.loc["9", "jeffreys_p"] > 0.99
    # grade 5: the 99.9% band of Bin(400, .02) is 1..19 bads, and 20 is outside it
    assert (table.loc["5", "band_999_lower"], table.loc["5", "band_999_upper"]) == (
        1 / 400, 19 / 400)
    assert "band_999_corr_lower" not in table.columns  # no correlation asked for


def test_evaluate_counts_the_grade_results() -> None:
    """evaluate() on a tiny test/train pair: its metrics are the statistics above."""
    y, p, g = _book()
    feat = np.arange(len(y), dtype=float)
    test = pd.DataFrame({"bad": y, "f": feat})
    pred = pd.DataFrame({"pd": p, "margin": np.log(p / (1 - p)), "grade": g})
    ev = evaluate(test, pred, test, pred, ["f"], SCALE, bins=5, psi_bins=4,
                  asset_correlation=0.12)
    grades = grade_table(y, p, g, SCALE, 0.12)
    m = ev.metrics
    outside = sum(not _expected_row(k, 0.12)["inside_999"] for k in BOOK)
    assert m["grades_outside_999"] == outside == 1
    # four grades have buyers (4, 5, 7, 9); grade 5 is outside, the other three inside
    assert m["grades_tested"] == 4.0
    assert m["grades_inside_999_count"] == 3.0
    assert m["grades_all_inside_999"] == 0.0
    assert "grades_inside_999" not in m  # the old name read like a count; it was a flag
    assert m["grades_outside_999_corr"] == 0.0
    assert m["grades_red"] == 1.0
    assert m["test_ece"] == pytest.approx(ece(y, p, 5))
    assert m["score_psi"] == 0.0 and m["feature_psi_max"] == 0.0  # train == test
    pd.testing.assert_frame_equal(ev.grades, grades)
    assert ev.grade_distribution.set_index("grade").loc["5", "test_share"] == pytest.approx(
        400 / 670)


# ten grades of 200 buyers each at a PD inside the grade; bads by grade: grade 3 (PD .45%,
# 0.9 bads expected) has 12, far above its band; the others have about the expected count
TEN_PD = [0.001, 0.002, 0.0045, 0.009, 0.018, 0.036, 0.072, 0.14, 0.27, 0.6]
TEN_BADS = [0, 0, 12, 2, 4, 7, 14, 28, 54, 120]


def test_grade_counts_nine_of_ten_inside() -> None:
    # the 99.9% band of Bin(200, pd), from the independent quantile above, by grade
    bands = [(binom_quantile(0.0005, 200, q), binom_quantile(0.9995, 200, q)) for q in TEN_PD]
    inside = [lo <= k <= hi for (lo, hi), k in zip(bands, TEN_BADS, strict=True)]
    assert inside == [True, True, False] + [True] * 7  # the book is what it says
    assert bands[2] == (0, 5)
    y = np.concatenate([[1.0] * k + [0.0] * (200 - k) for k in TEN_BADS])
    p = np.repeat(TEN_PD, 200)
    g = np.repeat([str(k) for k in range(1, 11)], 200)
    pred = pd.DataFrame({"pd": p, "margin": np.log(p / (1 - p)), "grade": g})
    frame = pd.DataFrame({"bad": y, "f": p})
    m = evaluate(frame, pred, frame, pred, ["f"], SCALE, asset_correlation=0.0).metrics
    assert m["grades_tested"] == 10.0
    assert m["grades_inside_999_count"] == 9.0
    assert m["grades_outside_999"] == 1.0
    assert m["grades_all_inside_999"] == 0.0
    # without grade 10's buyers: nine tested, eight inside; an empty grade is not inside
    keep = g != "10"
    m9 = evaluate(frame[keep], pred[keep], frame[keep], pred[keep], ["f"], SCALE).metrics
    assert (m9["grades_tested"], m9["grades_inside_999_count"], m9["grades_outside_999"]) == (
        9.0, 8.0, 1.0)


def test_grade_counts_of_a_hand_made_table() -> None:
    table = pd.DataFrame({"grade": ["1", "2", "3", "4"], "buyers": [10, 0, 5, 7],
                          "inside_999": [True, None, True, True]})
    assert grade_counts(table) == {"grades_tested": 3.0, "grades_inside_999_count": 3.0,
                                   "grades_outside_999": 0.0, "grades_all_inside_999": 1.0}


def test_evaluate_judges_stability_of_test_against_train() -> None:
    """Train and test differ, so the stability figures are not 0 by construction: score and
    feature PSI and the grade shares, each worked out by hand (2 quantile bins of the train
    values: below 1.5, from 1.5; missing values are a bin of their own)."""
    test = pd.DataFrame({"bad": [0.0, 1.0, 0.0, 1.0], "f": [3.0, 3.0, 3.0, np.nan]})
    test_pred = pd.DataFrame({"pd": [0.1, 0.2, 0.1, 0.2], "margin": [0.0, 0.0, 0.0, 3.0],
                              "grade": ["8", "9", "8", "9"]})
    train = pd.DataFrame({"bad": [0.0, 1.0, 0.0, 1.0], "f": [0.0, 1.0, 2.0, 3.0]})
    train_pred = pd.DataFrame({"pd": [0.1, 0.2, 0.1, 0.2], "margin": [0.0, 1.0, 2.0, 3.0],
                               "grade": ["7", "7", "8", "9"]})
    ev = evaluate(test, test_pred, train, train_pred, ["f"], SCALE, bins=2, psi_bins=2)
    # margins: train shares (1/2, 1/2, 0), test (3/4, 1/4, 0)
    assert ev.metrics["score_psi"] == pytest.approx(0.25 * math.log(3))
    # f: train (1/2, 1/2, 0), test (0, 3/4, 1/4): the empty bin floored at EPS
    want_f = psi_term(0, 0.5) + psi_term(0.75, 0.5) + psi_term(0.25, 0)
    assert ev.feature_psi.set_index("feature").loc["f", "psi"] == pytest.approx(want_f)
    assert ev.metrics["feature_psi_max"] == pytest.approx(want_f)
    shares = ev.grade_distribution.set_index("grade")
    assert shares.loc["7", "train_share"] == 0.5 and shares.loc["7", "test_share"] == 0.0
    assert shares.loc["8", "train_share"] == 0.25 and shares.loc["8", "test_share"] == 0.5
    assert shares.loc["9", "train_share"] == 0.25 and shares.loc["9", "test_share"] == 0.5
