"""The feature catalogue: what each feature of :func:`~riskmodel.features.engine.feature_names`
is, in one place.

For every feature the engine emits (whatever ``features.windows``), :func:`lookup` gives a
:class:`FeatureInfo`: its concept (the measure, the same for every window), family, window,
unit, risk direction, the monotone constraint training puts on it by default, a definition,
a **reason code** and the reason template in words that explanations fill in.

Reason codes are one per concept and never change: the table :data:`CODES` is written out
by hand, a new concept takes the next free number, and a code is never reused or renumbered
(``tests/test_catalogue.py`` holds the table). The generated sections of
``docs/features.md`` and ``docs/explanations.md`` come from here; regenerate them with

    python -m riskmodel.features.catalogue --write

(``python -m riskmodel.features.catalogue features`` or ``codes`` prints a section).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from riskmodel.features.engine import FeatureConfig, feature_names

#: the reason code of each concept, by concept key. Written out: never renumber a code, never
#: reuse one; a new concept takes the next free number.
CODES: dict[str, str] = {
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
    "cycle_industry_new_default_rate_chg6m": "R39",
    "cycle_country_overdue30_share": "R40", "cycle_country_dbt_median": "R41",
    "cycle_country_dbt_median_chg6m": "R42", "cycle_country_new_default_rate": "R43",
    "cycle_country_new_default_rate_chg6m": "R44",
    "cycle_portfolio_overdue30_share": "R45", "cycle_portfolio_dbt_median": "R46",
    "cycle_portfolio_dbt_median_chg6m": "R47", "cycle_portfolio_new_default_rate": "R48",
    "cycle_portfolio_new_default_rate_chg6m": "R49",
}

#: reasons that are not about a feature: (code, concept, text)
SPECIAL_REASONS: dict[str, tuple[str, str, str]] = {
    "short_history": (
        "R90", "too little history",
        "Too little history to judge its payments: a trading history of {value}, payment "
        "figures missing in {missing}; the PD rests more on firmographics, peers and the "
        "credit cycle."),
    "in_default": (
        "R91", "in default",
        "In default at the as-of date (a credit event, or an invoice past the default "
        "threshold of days past due): grade D, PD 1, no model reasons."),
}

#: how a value is rendered in a reason (see :mod:`riskmodel.explain.reasons`): ``late``
#: days beyond terms (late / early / on time), ``dpd`` days past due (or not yet due),
#: ``days``, ``days_diff`` (later / earlier), ``days_per_month`` (signed), ``share`` and
#: ``ratio`` (percent), ``pp`` (signed percentage points), ``amount`` (thousands
#: separators), ``count``, ``score``, ``years``, ``category``
RENDERINGS = ("late", "dpd", "days", "days_diff", "days_per_month", "share", "ratio", "pp",
              "amount", "count", "score", "years", "category")
TYPICAL = "portfolio median: {typical}"


@dataclass(frozen=True)
class Concept:
    """A measure, the same whatever its window: its features are ``<key>_<w>`` (windowed)
    or ``<key>`` itself."""

    key: str
    concept: str
    family: str
    unit: str
    render: str
    direction: int
    monotone: int
    description: str
    #: main clause of the reason: ``{value}`` (rendered) and ``{window}`` (days)
    text: str
    windowed: bool = True
    #: window of a non-windowed feature that looks back a fixed number of days
    window: int | None = None
    #: the clause on the portfolio median; None: the reason does not compare
    typical_text: str | None = TYPICAL
    #: the reason when the feature is missing (no ``{value}``); default from the concept
    missing_text: str | None = None
    #: the rendered value is ``expm1(value)`` (features stored as ``ln(1 + x)``)
    expm1: bool = False

    @property
    def code(self) -> str:
        return CODES[self.key]


@dataclass(frozen=True)
class FeatureInfo:
    """One feature column: its concept and, for a windowed concept, its window."""

    name: str
    concept: Concept
    window: int | None

    @property
    def code(self) -> str:
        return self.concept.code

    @property
    def family(self) -> str:
        return self.concept.family

    @property
    def unit(self) -> str:
        return self.concept.unit

    @property
    def direction(self) -> int:
        """+1: risk rises with the value; -1: it falls; 0: none or unknown."""
        return self.concept.direction

    @property
    def monotone(self) -> int:
        """The monotone constraint training puts on the feature by default (0: none)."""
        return self.concept.monotone

    @property
    def description(self) -> str:
        return fill(self.concept.description, window=self.window)

    @property
    def template(self) -> str:
        """The reason sentence, ``{value}`` and ``{typical}`` to fill."""
        return sentence(fill(self.concept.text, window=self.window),
                        self.concept.typical_text)

    @property
    def missing_template(self) -> str:
        """The reason sentence when the feature is missing (nothing to fill)."""
        return sentence(fill(missing_text(self.concept), window=self.window), None)


def fill(text: str, **values: object) -> str:
    """``text`` with the named fields replaced and any other ``{field}`` left as it is."""
    for key, value in values.items():
        text = text.replace("{" + key + "}", str(value))
    return text


def sentence(text: str, typical_text: str | None) -> str:
    return text + (f" ({typical_text})." if typical_text else ".")


def missing_text(c: Concept) -> str:
    if c.missing_text is not None:
        return c.missing_text
    span = " over the last {window} days" if (c.windowed or c.window) else ""
    return f"No figure for {c.concept}{span} (nothing to measure it on)"


_PAID = "No invoice paid in the last {window} days, so no figure for "
_WHERE = {"industry": ("its industry", "the buyers of its industry"),
          "country": ("its country", "the buyers of its country"),
          "portfolio": ("the whole book", "the buyers of the whole book")}


def _cycle(group: str) -> list[Concept]:
    who, buyers = _WHERE[group]
    fam = "cycle"
    typ = None if group == "portfolio" else TYPICAL  # the same for every buyer of the book
    missing = (f"The credit cycle of {who} is not known (too few buyers in the group, or "
               "no group)")
    return [
        Concept(f"cycle_{group}_overdue30_share", f"overdue share of {who}", fam, "share",
                "share", 1, 1,
                f"share of the live buyers of {who} with an invoice open more than 30 days "
                "past due", f"{value_of(who, 'the share of live buyers more than 30 days past due')}"
                " is {value}", False, typical_text=typ, missing_text=missing),
        Concept(f"cycle_{group}_dbt_median", f"payment speed of {who}", fam, "days", "late", 1, 1,
                f"median over {buyers} of the amount-weighted days beyond terms of the "
                "shortest window",
                f"{buyers.capitalize()} paid a median {{value}} in the shortest window", False,
                typical_text=typ, missing_text=missing),
        Concept(f"cycle_{group}_dbt_median_chg6m", f"payment speed change of {who}", fam,
                "days", "days_diff", 1, 1,
                f"the median days beyond terms of {buyers} minus its value 6 months earlier",
                f"{buyers.capitalize()} pay a median {{value}} than 6 months earlier", False,
                typical_text=typ, missing_text=missing),
        Concept(f"cycle_{group}_new_default_rate", f"default rate of {who}", fam, "share",
                "share", 1, 1,
                f"share of the buyers of {who} live 3 months earlier that entered default since",
                f"{value_of(who, 'the default rate of the last 3 months')} is {{value}}", False,
                typical_text=typ, missing_text=missing),
        Concept(f"cycle_{group}_new_default_rate_chg6m", f"default rate change of {who}", fam,
                "share change", "pp", 1, 1,
                f"the 3-month default rate of {who} minus its value 6 months earlier",
                f"{value_of(who, 'the 3-month default rate')} changed by {{value}} in 6 months",
                False, typical_text=typ, missing_text=missing),
    ]


def value_of(who: str, what: str) -> str:
    """``In its industry, the ...``: a clause opening."""
    return f"In {who}, {what}"


#: every concept, in the engine's output order
CONCEPTS: tuple[Concept, ...] = (
    Concept("dbt_mean", "mean days beyond terms", "payment", "days", "late", 1, 1,
            "mean days beyond terms (DBT) of the invoices paid in the last {window} days",
            "Paid on average {value} over the last {window} days",
            missing_text=_PAID + "days beyond terms"),
    Concept("dbt_wmean", "amount-weighted days beyond terms", "payment", "days", "late", 1, 1,
            "amount-weighted mean DBT of the invoices paid in the last {window} days",
            "Paid {value} on average, weighted by amount, over the last {window} days",
            missing_text=_PAID + "days beyond terms"),
    Concept("dbt_p90", "90th percentile of days beyond terms", "payment", "days", "late", 1, 1,
            "90th percentile of DBT (linear interpolation) of the invoices paid in the last "
            "{window} days",
            "One payment in ten over the last {window} days was {value} or worse",
            missing_text=_PAID + "days beyond terms"),
    Concept("dbt_max", "longest payment delay", "payment", "days", "late", 1, 1,
            "largest DBT of the invoices paid in the last {window} days",
            "Its slowest payment over the last {window} days was {value}",
            missing_text=_PAID + "days beyond terms"),
    Concept("late_share_0", "share paid late", "payment", "share", "share", 1, 1,
            "share of the amount paid in the last {window} days that was paid more than 0 "
            "days late",
            "{value} of the amount paid over the last {window} days was paid late",
            missing_text=_PAID + "late payments"),
    Concept("late_share_30", "share paid over 30 days late", "payment", "share", "share", 1, 1,
            "share of the amount paid in the last {window} days that was paid more than 30 "
            "days late",
            "{value} of the amount paid over the last {window} days was paid more than 30 "
            "days late", missing_text=_PAID + "late payments"),
    Concept("late_share_60", "share paid over 60 days late", "payment", "share", "share", 1, 1,
            "share of the amount paid in the last {window} days that was paid more than 60 "
            "days late",
            "{value} of the amount paid over the last {window} days was paid more than 60 "
            "days late", missing_text=_PAID + "late payments"),
    Concept("paydex", "payment index", "payment", "score 1-100", "score", -1, -1,
            "PAYDEX-style 1-100 index, amount-weighted over the invoices paid in the last "
            "{window} days: 100 at 30 or more days early, 80 on time, 50 at 30 days late, 20 "
            "at 120, 1 at 180 or more, linear in between",
            "Payment index of {value} over the last {window} days, where 80 is paying on time "
            "and lower is later", missing_text=_PAID + "the payment index"),
    Concept("invoice_count", "invoices issued", "activity", "count", "count", 0, 0,
            "number of invoices issued in the last {window} days",
            "{value} invoices issued in the last {window} days"),
    Concept("invoice_amount", "amount invoiced", "activity", "amount", "amount", 0, 0,
            "amount of the invoices issued in the last {window} days",
            "Invoiced {value} in the last {window} days"),
    Concept("invoice_count_yoy", "invoices issued against a year earlier", "activity", "ratio",
            "ratio", 0, 0,
            "invoices issued in the last {window} days over those issued in the same window a "
            "year earlier; missing when that window holds none or begins before the data start",
            "Issued {value} of the invoices of the same {window} days a year earlier",
            missing_text="No invoices in the same {window} days a year earlier to compare with"),
    Concept("invoice_amount_yoy", "amount invoiced against a year earlier", "activity", "ratio",
            "ratio", 0, 0,
            "amount invoiced in the last {window} days over the amount of the same window a "
            "year earlier; missing as the count ratio",
            "Invoiced {value} of the amount of the same {window} days a year earlier",
            missing_text="No invoices in the same {window} days a year earlier to compare with"),
    Concept("dbt_trend", "trend of days beyond terms", "payment", "days", "days_diff", 1, 0,
            "amount-weighted DBT of the shortest window minus that of the longest",
            "Paid {value} in the shortest window than in the longest", windowed=False,
            missing_text="No recent payment to compare with the longest window"),
    Concept("dbt_slope_monthly", "monthly slope of days beyond terms", "payment",
            "days per month", "days_per_month", 1, 0,
            "least-squares slope of the monthly mean DBT of the payments of the last 365 days "
            "(positive: payments get later); missing with fewer than 3 months with a payment",
            "Payment delays changed by {value} over the last {window} days", windowed=False,
            window=365,
            missing_text="Fewer than 3 months with a payment in the last {window} days: no "
                         "trend of payment delays"),
    Concept("open_amount", "open amount", "exposure", "amount", "amount", 0, 0,
            "amount of the invoices open at the as-of date",
            "Owes {value} on open invoices", windowed=False),
    Concept("overdue_1_30", "amount 1-30 days past due", "exposure", "amount", "amount", 1, 1,
            "open amount 1-30 days past due", "{value} is 1-30 days past due", windowed=False),
    Concept("overdue_31_60", "amount 31-60 days past due", "exposure", "amount", "amount", 1, 1,
            "open amount 31-60 days past due", "{value} is 31-60 days past due",
            windowed=False),
    Concept("overdue_61_90", "amount 61-90 days past due", "exposure", "amount", "amount", 1, 1,
            "open amount 61-90 days past due", "{value} is 61-90 days past due",
            windowed=False),
    Concept("overdue_90p", "amount over 90 days past due", "exposure", "amount", "amount", 1, 1,
            "open amount more than 90 days past due", "{value} is more than 90 days past due",
            windowed=False),
    Concept("oldest_open_dpd", "oldest open invoice past due", "exposure", "days", "dpd", 1, 1,
            "the largest days past due among the open invoices; negative if none is due yet, "
            "missing if nothing is open",
            "Its oldest open invoice is {value}", windowed=False,
            missing_text="No open invoice"),
    Concept("overdue_share_open", "share of the open amount past due", "exposure", "share",
            "share", 1, 1,
            "share of the open amount that is past due; missing if nothing is open",
            "{value} of the open amount is past due", windowed=False,
            missing_text="No open invoice"),
    Concept("due_60_unpaid_share", "recently due amount unpaid", "exposure", "share", "share",
            1, 1,
            "of the amount that fell due in the last 60 days, the share still unpaid; missing "
            "if nothing fell due",
            "{value} of what fell due in the last {window} days is unpaid", windowed=False,
            window=60, missing_text="Nothing fell due in the last {window} days"),
    Concept("open_to_invoiced_12m", "open amount against a year's invoicing", "exposure",
            "ratio", "ratio", 1, 0,
            "open amount over the amount invoiced in the last 365 days; missing if nothing "
            "was invoiced",
            "Its open amount is {value} of what it was invoiced in the last {window} days",
            windowed=False, window=365,
            missing_text="Nothing invoiced in the last {window} days"),
    Concept("days_since_last_invoice", "days since the last invoice", "activity", "days",
            "days", 0, 0, "days from the last invoice issued on or before the as-of date",
            "Last invoiced {value} ago", windowed=False),
    Concept("history_days", "length of trading history", "activity", "days", "days", -1, 0,
            "days since the buyer's first invoice, capped at features.history_cap_days",
            "Trading history of {value}", windowed=False),
    Concept("distinct_suppliers_365", "number of suppliers", "activity", "count", "count",
            0, 0,
            "number of distinct suppliers among the invoices issued in the last 365 days",
            "Bought from {value} supplier(s) in the last {window} days", windowed=False,
            window=365),
    Concept("disputed_share_365", "share of invoices disputed", "activity", "share", "share",
            1, 0,
            "share of the amount invoiced in the last 365 days that was disputed by the as-of "
            "date; only when the invoices have a dispute_date column",
            "{value} of the amount invoiced in the last {window} days was disputed",
            windowed=False, window=365,
            missing_text="Nothing invoiced in the last {window} days"),
    Concept("age_years", "age of the company", "firmographics", "years", "years", -1, 0,
            "year of the as-of date minus the founding year",
            "Company founded {value} ago", windowed=False,
            missing_text="Founding year not known"),
    Concept("log_revenue", "annual revenue", "firmographics", "ln(1 + amount)", "amount", -1,
            0, "ln(1 + annual revenue)", "Annual revenue of {value}", windowed=False,
            missing_text="Annual revenue not known", expm1=True),
    Concept("log_employees", "number of employees", "firmographics", "ln(1 + count)", "count",
            -1, 0, "ln(1 + employees)", "{value} employees", windowed=False,
            missing_text="Number of employees not known", expm1=True),
    Concept("industry", "industry", "firmographics", "category", "category", 0, 0,
            "industry code (categorical; a category unseen in training counts as missing)",
            "Its industry, {value}, carries a higher risk in the model", windowed=False,
            typical_text=None, missing_text="Industry not known to the model"),
    Concept("country", "country", "firmographics", "category", "category", 0, 0,
            "country code (categorical, as industry)",
            "Its country, {value}, carries a higher risk in the model", windowed=False,
            typical_text=None, missing_text="Country not known to the model"),
    Concept("dbt_vs_industry", "days beyond terms against its industry", "peers", "days",
            "days_diff", 1, 0,
            "amount-weighted DBT of the longest window minus the median of that figure over "
            "the buyers of its industry at the as-of date",
            "Pays {value} than the median buyer of its industry", windowed=False,
            missing_text="No payment to compare with its industry"),
    Concept("dbt_vs_country", "days beyond terms against its country", "peers", "days",
            "days_diff", 1, 0,
            "the same against the buyers of its country",
            "Pays {value} than the median buyer of its country", windowed=False,
            missing_text="No payment to compare with its country"),
    *_cycle("industry"), *_cycle("country"), *_cycle("portfolio"),
)

_BY_KEY = {c.key: c for c in CONCEPTS}
_WINDOWED = re.compile(r"^(?P<key>.+)_(?P<w>\d+)$")


class CatalogueError(KeyError):
    """A feature that the catalogue does not describe."""


def lookup(name: str) -> FeatureInfo | None:
    """The catalogue entry of feature ``name`` (any window), None for an unknown name."""
    c = _BY_KEY.get(name)
    if c is not None and not c.windowed:
        return FeatureInfo(name, c, c.window)
    m = _WINDOWED.match(name)
    if m:
        c = _BY_KEY.get(m["key"])
        if c is not None and c.windowed:
            return FeatureInfo(name, c, int(m["w"]))
    return None


def describe(name: str) -> FeatureInfo:
    """As :func:`lookup`, raising :class:`CatalogueError` for an unknown feature."""
    info = lookup(name)
    if info is None:
        raise CatalogueError(f"feature {name!r} is not in the feature catalogue "
                             "(riskmodel.features.catalogue)")
    return info


def catalogue(cfg: FeatureConfig | None = None) -> list[FeatureInfo]:
    """Every feature of :func:`feature_names` for ``cfg``, in output order."""
    return [describe(n) for n in feature_names(cfg or FeatureConfig())]


def monotone_defaults(names: Sequence[str]) -> dict[str, int]:
    """The default monotone constraint of each feature (0 for a name not catalogued)."""
    out = {}
    for n in names:
        info = lookup(n)
        out[n] = info.monotone if info is not None else 0
    return out


# --------------------------------------------------------------------------- docs

_SIGN = {1: "+1", -1: "-1", 0: "0"}
#: generated sections are written between these markers
BEGIN = "<!-- BEGIN GENERATED: {} (python -m riskmodel.features.catalogue --write) -->"
END = "<!-- END GENERATED: {} -->"


def _names(c: Concept) -> str:
    return f"`{c.key}_w`" if c.windowed else f"`{c.key}`"


def _generic(text: str, c: Concept) -> str:
    return fill(text, window="w" if c.windowed else (c.window if c.window else "{window}"))


def catalogue_markdown() -> str:
    """The per-feature table of docs/features.md: one row per concept, ``w`` for each
    window of ``features.windows``."""
    lines = ["| feature | code | family | unit | risk | monotone | definition |",
             "|---|---|---|---|---|---|---|"]
    for c in CONCEPTS:
        lines.append(f"| {_names(c)} | {c.code} | {c.family} | {c.unit} | "
                     f"{_SIGN[c.direction]} | {_SIGN[c.monotone] if c.monotone else ''} | "
                     f"{_generic(c.description, c)} |")
    return "\n".join(lines) + "\n"


def codes_markdown() -> str:
    """The reason-code table of docs/explanations.md."""
    lines = ["| code | concept | features | reason (missing value: second line) |",
             "|---|---|---|---|"]
    for c in CONCEPTS:
        main = _generic(sentence(c.text, c.typical_text), c)
        miss = _generic(sentence(missing_text(c), None), c)
        lines.append(f"| {c.code} | {c.concept} | {_names(c)} | {main}<br>{miss} |")
    for code, concept, text in SPECIAL_REASONS.values():
        lines.append(f"| {code} | {concept} | | {text} |")
    return "\n".join(lines) + "\n"


SECTIONS = {"features": ("docs/features.md", catalogue_markdown),
            "codes": ("docs/explanations.md", codes_markdown)}


def replace_section(text: str, name: str, body: str) -> str:
    """``text`` with the generated section ``name`` replaced by ``body``."""
    begin, end = BEGIN.format(name), END.format(name)
    i, j = text.find(begin), text.find(end)
    if i < 0 or j < i:
        raise ValueError(f"no generated section {name!r} (markers {begin!r} ... {end!r})")
    return text[:i + len(begin)] + "\n\n" + body + "\n" + text[j:]


def main(argv: Sequence[str]) -> int:
    if list(argv) == ["--write"]:
        root = Path(__file__).resolve().parents[3]
        for name, (doc, make) in SECTIONS.items():
            path = root / doc
            path.write_text(replace_section(path.read_text(encoding="utf-8"), name, make()),
                            encoding="utf-8")
            print(f"wrote the {name} section of {path}")
        return 0
    if len(argv) == 1 and argv[0] in SECTIONS:
        sys.stdout.write(SECTIONS[argv[0]][1]())
        return 0
    print("usage: python -m riskmodel.features.catalogue features|codes|--write",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
