"""Reason codes from hand-made contributions: windows of a concept grouped into one reason,
ranking by the summed contribution, only reasons that raise the risk, K, templates filled by
hand, missing values, too little history, buyers in default."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from riskmodel.explain.reasons import importance, reason_codes, render, typical_values

NAMES = ["dbt_mean_90", "dbt_mean_365", "late_share_0_90", "paydex_90", "overdue_90p",
         "history_days", "log_revenue", "industry"]
AS_OF = pd.Timestamp("2024-06-30")


def frames(rows: list[dict[str, object]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Features and contributions of hand-made rows: each row gives ``id``, ``status``, the
    feature values (``f``) and contributions (``c``, 0 where not given)."""
    feats = pd.DataFrame([{"buyer_id": r["id"], "as_of": AS_OF, "status": r.get("status",
                                                                                "active"),
                           **{n: r["f"].get(n, np.nan) for n in NAMES}}  # type: ignore[union-attr]
                          for r in rows])
    feats["industry"] = feats["industry"].astype(object)
    contrib = pd.DataFrame([{n: r.get("c", {}).get(n, 0.0) for n in NAMES}  # type: ignore[union-attr]
                            for r in rows])
    contrib.insert(0, "base_value", -3.0)
    contrib["margin"] = contrib.sum(axis=1)
    return feats, contrib


FULL = {"dbt_mean_90": 12.4, "dbt_mean_365": 8.0, "late_share_0_90": 0.25, "paydex_90": 62.0,
        "overdue_90p": 12345.6, "history_days": 300.0, "log_revenue": float(np.log1p(250_000)),
        "industry": "C"}
TYPICAL = pd.Series({"dbt_mean_90": 3.0, "dbt_mean_365": 2.0, "late_share_0_90": 0.05,
                     "paydex_90": 80.0, "overdue_90p": 0.0, "history_days": 365.0,
                     "log_revenue": float(np.log1p(1_000_000)), "industry": np.nan})


def test_windows_are_grouped_ranked_and_only_risk_raising_reasons_kept() -> None:
    # dbt_mean: 0.3 + 0.2 = 0.5 as one reason, above overdue_90p's 0.45 (alone, 0.3 would be
    # below it); late_share lowers the risk and is no reason
    feats, contrib = frames([{"id": "B1", "f": FULL, "c": {
        "dbt_mean_90": 0.3, "dbt_mean_365": 0.2, "overdue_90p": 0.45, "paydex_90": 0.1,
        "late_share_0_90": -0.2, "log_revenue": 0.05, "history_days": -0.1}}])
    out = reason_codes(contrib, feats, TYPICAL)
    assert list(out.columns) == ["buyer_id", "as_of", "rank", "code", "feature", "value",
                                 "typical", "text"]
    assert out["code"].tolist() == ["R01", "R19", "R08", "R29"]
    assert out["rank"].tolist() == [1, 2, 3, 4]
    assert out["feature"].tolist() == ["dbt_mean_90", "overdue_90p", "paydex_90",
                                       "log_revenue"]
    assert out["value"].tolist()[:3] == [12.4, 12345.6, 62.0]
    assert out["typical"].tolist()[:3] == [3.0, 0.0, 80.0]
    assert out["text"].tolist() == [
        "Paid on average 12 days late over the last 90 days (portfolio median: 3 days late).",
        "12,346 is more than 90 days past due (portfolio median: 0).",
        "Payment index of 62 over the last 90 days, where 80 is paying on time and lower is "
        "later (portfolio median: 80).",
        "Annual revenue of 250,000 (portfolio median: 1,000,000).",
    ]
    top2 = reason_codes(contrib, feats, TYPICAL, top=2)
    assert top2["code"].tolist() == ["R01", "R19"]


def test_a_group_that_nets_out_negative_is_no_reason_and_the_lead_is_the_largest() -> None:
    feats, contrib = frames([
        {"id": "B1", "f": FULL, "c": {"dbt_mean_90": 0.3, "dbt_mean_365": -0.4,
                                      "late_share_0_90": 0.02}},
        {"id": "B2", "f": FULL, "c": {"dbt_mean_90": 0.1, "dbt_mean_365": 0.4}},
    ])
    out = reason_codes(contrib, feats, TYPICAL)
    assert out[out["buyer_id"] == "B1"]["code"].tolist() == ["R05"]
    b1 = out[out["buyer_id"] == "B1"].iloc[0]
    assert b1["text"] == ("25% of the amount paid over the last 90 days was paid late "
                          "(portfolio median: 5%).")
    b2 = out[out["buyer_id"] == "B2"].iloc[0]
    assert (b2["code"], b2["feature"]) == ("R01", "dbt_mean_365")
    assert b2["text"] == ("Paid on average 8 days late over the last 365 days (portfolio "
                          "median: 2 days late).")


def test_a_push_too_small_to_act_on_is_no_reason() -> None:
    feats, contrib = frames([{"id": "B1", "f": FULL, "c": {"dbt_mean_90": 0.009}},
                             {"id": "B2", "f": FULL, "c": {"dbt_mean_90": 0.011}}])
    out = reason_codes(contrib, feats, TYPICAL)
    assert out["buyer_id"].tolist() == ["B2"]
    assert len(reason_codes(contrib, feats, TYPICAL, min_contribution=0.0)) == 2


def test_no_reason_without_a_positive_contribution() -> None:
    feats, contrib = frames([{"id": "B1", "f": FULL, "c": {"dbt_mean_90": -0.3}},
                             {"id": "B2", "f": FULL}])
    assert len(reason_codes(contrib, feats, TYPICAL)) == 0


def test_missing_values_and_missing_typical_never_print_nan() -> None:
    values = {**FULL, "dbt_mean_365": np.nan, "industry": None}
    feats, contrib = frames([{"id": "B1", "f": values, "c": {
        "dbt_mean_365": 0.4, "paydex_90": 0.3, "industry": 0.2}}])
    typical = TYPICAL.copy()
    typical["paydex_90"] = np.nan
    out = reason_codes(contrib, feats, typical)
    assert out["text"].tolist() == [
        "No invoice paid in the last 365 days, so no figure for days beyond terms.",
        "Payment index of 62 over the last 90 days, where 80 is paying on time and lower is "
        "later.",
        "Industry not known to the model.",
    ]
    assert np.isnan(out["value"].iloc[0])
    assert not out["text"].str.contains("nan", case=False).any()


def test_a_category_is_quoted_by_its_value() -> None:
    feats, contrib = frames([{"id": "B1", "f": FULL, "c": {"industry": 0.2}}])
    out = reason_codes(contrib, feats, TYPICAL)
    assert out["text"].tolist() == ["Its industry, C, carries a higher risk in the model."]
    assert np.isnan(out["value"].iloc[0])


def test_short_history_comes_first_then_fewer_model_reasons() -> None:
    young = {**FULL, "history_days": 60.0}
    sparse = {**FULL, "dbt_mean_90": np.nan, "dbt_mean_365": np.nan, "late_share_0_90": np.nan,
              "paydex_90": np.nan, "history_days": 400.0}
    c = {"dbt_mean_90": 0.5, "overdue_90p": 0.4, "paydex_90": 0.3, "log_revenue": 0.2,
         "industry": 0.1}
    feats, contrib = frames([{"id": "Y", "f": young, "c": c}, {"id": "S", "f": sparse, "c": c}])
    out = reason_codes(contrib, feats, TYPICAL)
    y = out[out["buyer_id"] == "Y"]
    assert y["code"].tolist() == ["R90", "R01", "R19", "R08"]
    assert y["rank"].tolist() == [1, 2, 3, 4]
    assert y["text"].iloc[0] == (
        "Too little history to judge its payments: a trading history of 60 days, payment "
        "figures missing in 0 of 4; the PD rests more on firmographics, peers and the credit "
        "cycle.")
    s = out[out["buyer_id"] == "S"]
    assert s["code"].iloc[0] == "R90"
    assert "a trading history of 400 days, payment figures missing in 4 of 4" in s["text"].iloc[0]
    # a history just long enough and payments known: no such reason
    f_ok, c_ok = frames([{"id": "Z", "f": {**FULL, "history_days": 180.0}, "c": c}])
    ok = reason_codes(c_ok, f_ok, TYPICAL)
    assert "R90" not in ok["code"].tolist()


def test_in_default_gets_one_reason_of_its_own() -> None:
    feats, contrib = frames([
        {"id": "D", "status": "in_default", "f": FULL, "c": {"dbt_mean_90": 0.9}},
        {"id": "A", "f": FULL, "c": {"overdue_90p": 0.2}},
    ])
    out = reason_codes(contrib, feats, TYPICAL)
    d = out[out["buyer_id"] == "D"]
    assert d["code"].tolist() == ["R91"] and d["rank"].tolist() == [1]
    assert d["text"].iloc[0].startswith("In default at the as-of date")
    assert d["feature"].isna().all()
    assert out["buyer_id"].tolist() == ["D", "A"]  # input order kept


def test_output_is_ordered_by_input_row_then_rank() -> None:
    feats, contrib = frames([
        {"id": "B2", "f": FULL, "c": {"paydex_90": 0.1, "overdue_90p": 0.3}},
        {"id": "B1", "f": FULL, "c": {"overdue_90p": 0.1, "paydex_90": 0.3}},
    ])
    out = reason_codes(contrib, feats, TYPICAL)
    assert list(zip(out["buyer_id"], out["code"], strict=True)) == [
        ("B2", "R19"), ("B2", "R08"), ("B1", "R08"), ("B1", "R19")]


def test_bad_inputs() -> None:
    feats, contrib = frames([{"id": "B1", "f": FULL}])
    with pytest.raises(ValueError, match="top must be at least 1"):
        reason_codes(contrib, feats, TYPICAL, top=0)
    with pytest.raises(ValueError, match="must be the same rows"):
        reason_codes(contrib, pd.concat([feats, feats]), TYPICAL)
    with pytest.raises(ValueError, match="lacks"):
        reason_codes(contrib, feats.drop(columns=["paydex_90"]), TYPICAL)


def test_typical_values_are_medians_of_the_live_rows() -> None:
    feats, _ = frames([
        {"id": "A", "f": {**FULL, "dbt_mean_90": 1.0}},
        {"id": "B", "f": {**FULL, "dbt_mean_90": 5.0}},
        {"id": "C", "f": {**FULL, "dbt_mean_90": np.nan}},
        {"id": "D", "f": {**FULL, "dbt_mean_90": 9.0}},
        {"id": "E", "status": "in_default", "f": {**FULL, "dbt_mean_90": 500.0}},
    ])
    typ = typical_values(feats, NAMES)
    assert typ["dbt_mean_90"] == 5.0
    assert np.isnan(typ["industry"])
    assert np.isnan(typical_values(feats.assign(paydex_90=np.nan), NAMES)["paydex_90"])


@pytest.mark.parametrize("kind,value,words", [
    ("late", 12.4, "12 days late"), ("late", -3.6, "4 days early"), ("late", 0.2, "on time"),
    ("late", 1.0, "1 day late"), ("dpd", 45.0, "45 days past due"),
    ("dpd", -5.0, "not yet due"), ("days_diff", -2.0, "2 days earlier"),
    ("share", 0.2504, "25%"), ("share", 0.043, "4.3%"), ("share", 0.0, "0%"),
    ("ratio", 1.5, "150%"), ("pp", 0.012, "+1.2 percentage points"),
    ("amount", 1234567.4, "1,234,567"), ("amount", -0.4, "0"), ("years", 1.0, "1 year"),
    ("days_per_month", -0.04, "+0.0 days a month"), ("days_per_month", 1.26, "+1.3 days a month"),
])
def test_values_in_words(kind: str, value: float, words: str) -> None:
    assert render(kind, np.array([value]))[0] == words


def test_importance_groups_concepts() -> None:
    feats, contrib = frames([
        {"id": "A", "f": FULL, "c": {"dbt_mean_90": 0.3, "dbt_mean_365": -0.1,
                                     "overdue_90p": 0.2}},
        {"id": "B", "f": FULL, "c": {"dbt_mean_90": -0.1, "dbt_mean_365": -0.1,
                                     "overdue_90p": -0.4}},
    ])
    imp = importance(contrib)
    per_feature = imp[imp["level"] == "feature"].set_index("name")["mean_abs_contribution"]
    assert per_feature["dbt_mean_90"] == pytest.approx(0.2)
    assert per_feature["overdue_90p"] == pytest.approx(0.3)
    per_code = imp[imp["level"] == "concept"].set_index("code")["mean_abs_contribution"]
    assert per_code["R01"] == pytest.approx((0.2 + 0.2) / 2)  # |0.3-0.1|, |-0.1-0.1|
    assert imp[imp["level"] == "concept"]["code"].iloc[0] == "R19"  # largest first


def test_each_row_quotes_its_own_values() -> None:
    # the same reason for several buyers: each sentence and value is the buyer's own (a
    # value read from another row, e.g. the first, would give every buyer the same words)
    feats, contrib = frames([
        {"id": "B1", "f": {**FULL, "dbt_mean_90": 40.0}, "c": {"dbt_mean_90": 0.5}},
        {"id": "B2", "f": {**FULL, "dbt_mean_90": np.nan}, "c": {"dbt_mean_90": 0.5}},
        {"id": "B3", "f": {**FULL, "dbt_mean_90": -2.0}, "c": {"dbt_mean_90": 0.5}},
        {"id": "B4", "f": {**FULL, "dbt_mean_90": 40.0}, "c": {"dbt_mean_90": 0.5}},
    ])
    out = reason_codes(contrib, feats, TYPICAL)
    assert out["buyer_id"].tolist() == ["B1", "B2", "B3", "B4"]
    assert out["text"].tolist() == [
        "Paid on average 40 days late over the last 90 days (portfolio median: 3 days late).",
        "No invoice paid in the last 90 days, so no figure for days beyond terms.",
        "Paid on average 2 days early over the last 90 days (portfolio median: 3 days late).",
        "Paid on average 40 days late over the last 90 days (portfolio median: 3 days late).",
    ]
    np.testing.assert_array_equal(out["value"].to_numpy(), [40.0, np.nan, -2.0, 40.0])


def test_in_default_with_short_history_gets_only_the_default_reason() -> None:
    feats, contrib = frames([{"id": "D", "status": "in_default",
                              "f": {**FULL, "history_days": 30.0},
                              "c": {"dbt_mean_90": 0.9}}])
    out = reason_codes(contrib, feats, TYPICAL)
    assert out["code"].tolist() == ["R91"] and out["rank"].tolist() == [1]


def test_unknown_history_is_too_little_history() -> None:
    feats, contrib = frames([{"id": "U", "f": {**FULL, "history_days": np.nan},
                              "c": {"overdue_90p": 0.4}}])
    out = reason_codes(contrib, feats, TYPICAL)
    assert out["code"].tolist() == ["R90", "R19"]
    assert "a trading history of unknown length" in out["text"].iloc[0]
    assert not out["text"].str.contains("nan", case=False).any()


def test_missing_payment_share_boundary() -> None:
    # 4 payment features: 2 missing (a half) is not too little history, 3 missing is
    c = {"overdue_90p": 0.4}
    half = {**FULL, "dbt_mean_90": np.nan, "dbt_mean_365": np.nan}
    more = {**half, "paydex_90": np.nan}
    feats, contrib = frames([{"id": "H", "f": half, "c": c}, {"id": "M", "f": more, "c": c}])
    out = reason_codes(contrib, feats, TYPICAL)
    assert out[out["buyer_id"] == "H"]["code"].tolist() == ["R19"]
    assert out[out["buyer_id"] == "M"]["code"].tolist() == ["R90", "R19"]
    assert "payment figures missing in 3 of 4" in out["text"].iloc[1]
