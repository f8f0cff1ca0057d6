"""The feature catalogue: every feature the engine emits is described, codes are stable, the
generated documentation is current, and training's monotone constraints come from it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from riskmodel.features import FeatureConfig, feature_names
from riskmodel.features.catalogue import (
    CODES,
    CONCEPTS,
    SECTIONS,
    SPECIAL_REASONS,
    CatalogueError,
    catalogue,
    catalogue_markdown,
    codes_markdown,
    describe,
    lookup,
    replace_section,
)
from riskmodel.modeling.model import FeatureSpec
from riskmodel.modeling.training import TrainingError, monotone_vector
from riskmodel.params import parse_params

ROOT = Path(__file__).resolve().parents[1]

#: the code table as released: a code never moves to another concept
RELEASED = {
    "dbt_mean": "R01", "dbt_wmean": "R02", "dbt_p90": "R03", "dbt_max": "R04",
    "late_share_0": "R05", "late_share_30": "R06", "late_share_60": "R07", "paydex": "R08",
    "invoice_count": "R09", "invoice_amount": "R10", "invoice_count_yoy": "R11",
    "invoice_amount_yoy": "R12", "dbt_trend": "R13", "dbt_slope_monthly": "R14",
    "open_amount": "R15", "overdue_1_30": "R16", "overdue_31_60": "R17",
    "overdue_61_90": "R18", "overdue_90p": "R19", "oldest_open_dpd": "R20",
    "overdue_share_open": "R21", "due_60_unpaid_share": "R22", "open_to_invoiced_12m": "R23",
    "days_since_last_invoice": "R24", "history_days": "R25", "distinct_suppliers_365": "R26",
    "disputed_share_365": "R27", "age_years": "R28", "log_revenue": "R29",
    "log_employees": "R30", "industry": "R31", "country": "R32", "dbt_vs_industry": "R33",
    "dbt_vs_country": "R34",
    "cycle_industry_overdue30_share": "R35", "cycle_industry_dbt_median": "R36",
    "cycle_industry_dbt_median_chg6m": "R37", "cycle_industry_new_default_rate": "R38",
    "cycle_industry_new_default_rate_chg6m": "R39", "cycle_country_overdue30_share": "R40",
    "cycle_country_dbt_median": "R41", "cycle_country_dbt_median_chg6m": "R42",
    "cycle_country_new_default_rate": "R43", "cycle_country_new_default_rate_chg6m": "R44",
    "cycle_portfolio_overdue30_share": "R45", "cycle_portfolio_dbt_median": "R46",
    "cycle_portfolio_dbt_median_chg6m": "R47", "cycle_portfolio_new_default_rate": "R48",
    "cycle_portfolio_new_default_rate_chg6m": "R49",
}

#: the monotone constraints of params.yaml before they moved into the catalogue
FORMER_PARAMS = {
    "dbt_mean_*": 1, "dbt_wmean_*": 1, "dbt_p90_*": 1, "dbt_max_*": 1, "late_share_*": 1,
    "paydex_*": -1, "overdue_1_30": 1, "overdue_31_60": 1, "overdue_61_90": 1,
    "overdue_90p": 1, "oldest_open_dpd": 1, "overdue_share_open": 1,
    "due_60_unpaid_share": 1, "cycle_*": 1,
}


@pytest.mark.parametrize("windows", [(90, 180, 365), (30,), (7, 60, 400, 730), (365, 90)])
@pytest.mark.parametrize("disputes", [True, False])
def test_every_engine_feature_is_in_the_catalogue(windows: tuple[int, ...],
                                                  disputes: bool) -> None:
    cfg = FeatureConfig(windows=windows, disputes=disputes)
    names = feature_names(cfg)
    missing = [n for n in names if lookup(n) is None]
    assert missing == []
    assert [i.name for i in catalogue(cfg)] == names
    for name in names:
        info = describe(name)
        assert info.code == RELEASED[info.concept.key]
        assert "{window}" not in info.template and "{window}" not in info.description
        assert "{value}" in info.template
        assert "{value}" not in info.missing_template and "{typical}" not in info.missing_template
        # words for analysts: no column or params names
        assert "_" not in info.template + info.missing_template, name


def test_windows_of_a_concept_share_one_code_and_carry_their_window() -> None:
    a, b = describe("dbt_mean_90"), describe("dbt_mean_365")
    assert a.code == b.code == "R01"
    assert (a.window, b.window) == (90, 365)
    assert "last 90 days" in a.template and "last 365 days" in b.template
    assert describe("invoice_count_yoy_180").code == "R11"  # not invoice_count's R09
    assert describe("invoice_count_180").code == "R09"
    assert describe("late_share_30_90").code == "R06"
    assert describe("distinct_suppliers_365").window == 365  # a fixed look-back


def test_unknown_names_are_not_described() -> None:
    for name in ("x1", "dbt_mean", "dbt_mean_x", "history_days_90", "industry_2"):
        assert lookup(name) is None
    with pytest.raises(CatalogueError, match="'x1' is not in the feature catalogue"):
        describe("x1")


def test_codes_are_the_released_table_and_unique() -> None:
    assert CODES == RELEASED
    assert {c.key for c in CONCEPTS} == set(RELEASED)
    all_codes = [*CODES.values(), *(code for code, _, _ in SPECIAL_REASONS.values())]
    assert len(all_codes) == len(set(all_codes))
    assert all(re.fullmatch(r"R\d\d", c) for c in all_codes)
    assert {k: v[0] for k, v in SPECIAL_REASONS.items()} == {"short_history": "R90",
                                                             "in_default": "R91"}


def test_directions_and_units_of_some_concepts() -> None:
    assert (describe("paydex_90").direction, describe("paydex_90").monotone) == (-1, -1)
    assert (describe("dbt_trend").direction, describe("dbt_trend").monotone) == (1, 0)
    assert describe("history_days").direction == -1
    assert describe("industry").unit == "category"
    assert describe("late_share_0_90").unit == "share"
    assert describe("open_amount").family == "exposure"


@pytest.mark.parametrize("doc,name", [(d, n) for n, (d, _) in SECTIONS.items()])
def test_generated_docs_are_current(doc: str, name: str) -> None:
    text = (ROOT / doc).read_text(encoding="utf-8")
    expected = replace_section(text, name, SECTIONS[name][1]())
    assert text == expected, (f"{doc} is out of date: run python -m "
                              "riskmodel.features.catalogue --write")


def test_docs_tables_name_every_code_and_concept() -> None:
    features, codes = catalogue_markdown(), codes_markdown()
    for key, code in RELEASED.items():
        assert f"| {code} |" in features and f"| {code} |" in codes
        assert (f"`{key}_w`" in features) or (f"`{key}`" in features)
    assert "| R90 |" in codes and "| R91 |" in codes
    # the hand-written point-in-time rules are kept around the generated table
    text = (ROOT / "docs/features.md").read_text(encoding="utf-8")
    assert "## The point-in-time rule" in text and "## Censoring at the data start" in text


def test_replace_section_needs_its_markers() -> None:
    with pytest.raises(ValueError, match="no generated section 'features'"):
        replace_section("no markers here", "features", "x")


def _expected_from_former_params(names: list[str]) -> list[int]:
    import fnmatch

    out = []
    for n in names:
        hits = [v for p, v in FORMER_PARAMS.items() if fnmatch.fnmatchcase(n, p)]
        out.append(hits[-1] if hits else 0)
    return out


@pytest.mark.parametrize("windows", [(90, 180, 365), (30, 60)])
def test_monotone_defaults_are_the_former_params(windows: tuple[int, ...]) -> None:
    names = feature_names(FeatureConfig(windows=windows))
    spec = FeatureSpec(names, {"industry": ["C"], "country": ["DE"]})
    got = monotone_vector(spec, parse_params({}))
    assert got == _expected_from_former_params(names)
    assert sum(1 for d in got if d) == 8 * len(windows) + 7 + 15


def test_params_monotone_overrides_and_extends_the_catalogue() -> None:
    names = ["dbt_mean_90", "paydex_90", "history_days", "industry", "x1"]
    spec = FeatureSpec(names, {"industry": ["C"]})
    prm = parse_params({"train": {"monotone": {"dbt_mean_*": 0, "history_days": -1,
                                               "x1": 1}}})
    assert monotone_vector(spec, prm) == [0, -1, -1, 0, 1]
    assert monotone_vector(spec, parse_params({"train": {"monotone": {"*": 0}}})) == [0] * 5
    with pytest.raises(TrainingError, match="'industry' is categorical"):
        monotone_vector(spec, parse_params({"train": {"monotone": {"ind*": 1}}}))
    with pytest.raises(TrainingError, match="'nosuch' matches no feature"):
        monotone_vector(spec, parse_params({"train": {"monotone": {"nosuch": 1}}}))
