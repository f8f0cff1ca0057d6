"""The raw data contract, version 1.1, as data: tables, columns, types and row rules.

The contract text lives in ``docs/data-contract.md``. Everything that checks data against it
reads the declarations below, so the contract is written down once.

Version 1.1 added the optional ``dispute_date`` of invoices, the optional ``exposures`` table,
the ``future_date`` rule, and the inference of ``observed_until`` from accepted rows only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ColumnKind = Literal["string", "date", "float", "int", "bool"]

CONTRACT_VERSION = "1.1"

#: The tables every dataset has, in the order they are validated.
TABLES: tuple[str, ...] = ("buyers", "invoices", "events")
#: Tables a dataset may have; an absent one is no table, not an error.
OPTIONAL_TABLES: tuple[str, ...] = ("exposures",)
ALL_TABLES: tuple[str, ...] = TABLES + OPTIONAL_TABLES
EVENT_TYPES: tuple[str, ...] = ("insolvency", "default", "claim", "write_off", "restructuring")
MAX_TERMS_DAYS = 366
MIN_FOUNDED_YEAR = 1800


@dataclass(frozen=True)
class ColumnSpec:
    """One column of a contract table."""

    name: str
    kind: ColumnKind
    required: bool


TABLE_COLUMNS: dict[str, tuple[ColumnSpec, ...]] = {
    "invoices": (
        ColumnSpec("invoice_id", "string", True),
        ColumnSpec("buyer_id", "string", True),
        ColumnSpec("supplier_id", "string", False),
        ColumnSpec("issue_date", "date", True),
        ColumnSpec("due_date", "date", True),
        ColumnSpec("amount", "float", True),
        ColumnSpec("currency", "string", False),
        ColumnSpec("paid_date", "date", False),
        ColumnSpec("disputed", "bool", False),
        ColumnSpec("dispute_date", "date", False),
    ),
    "buyers": (
        ColumnSpec("buyer_id", "string", True),
        ColumnSpec("country", "string", True),
        ColumnSpec("industry", "string", True),
        ColumnSpec("founded_year", "int", False),
        ColumnSpec("employees", "float", False),
        ColumnSpec("annual_revenue", "float", False),
    ),
    "events": (
        ColumnSpec("buyer_id", "string", True),
        ColumnSpec("event_date", "date", True),
        ColumnSpec("event_type", "string", True),
    ),
    "exposures": (
        ColumnSpec("buyer_id", "string", True),
        ColumnSpec("supplier_id", "string", False),
        ColumnSpec("current_limit", "float", True),
        ColumnSpec("requested_limit", "float", False),
        ColumnSpec("currency", "string", False),
    ),
}

#: Dates that record something that happened: they bound the observation date (the inferred
#: ``observed_until`` is the latest of them among accepted rows), and none may be after the day
#: of the run (``future_date``). ``due_date`` is a scheduled date (routinely in the future of
#: the export) and is deliberately not one.
OBSERVATION_DATE_COLUMNS: dict[str, tuple[str, ...]] = {
    "invoices": ("issue_date", "paid_date", "dispute_date"),
    "buyers": (),
    "events": ("event_date",),
    "exposures": (),
}

# Row rules, in the order they are tried: a row that breaks several is rejected for the first.
# The names are the ``reason`` values of the rejects tables and the keys of the JSON report.
# ``future_date`` and then the ``*_after_observed_until`` rules come last in their tables: a row
# that reaches them breaks no other rule, so when ``observed_until`` is inferred as the latest
# date of the accepted rows these rules cannot fire, and the inference is self-consistent.
RULES: dict[str, tuple[str, ...]] = {
    "buyers": (
        "missing_buyer_id",
        "missing_country",
        "missing_industry",
        "unparseable_founded_year",
        "unparseable_employees",
        "unparseable_annual_revenue",
        "duplicate_buyer_id",
        "invalid_country",
        "founded_year_out_of_range",
        "employees_negative",
        "annual_revenue_negative",
    ),
    "invoices": (
        "missing_invoice_id",
        "missing_buyer_id",
        "missing_issue_date",
        "missing_due_date",
        "missing_amount",
        "unparseable_issue_date",
        "unparseable_due_date",
        "unparseable_paid_date",
        "unparseable_amount",
        "unparseable_disputed",
        "unparseable_dispute_date",
        "duplicate_invoice_id",
        "unknown_buyer_id",
        "buyer_rejected",
        "amount_not_finite",
        "amount_not_positive",
        "due_before_issue",
        "due_too_far_after_issue",
        "paid_before_issue",
        "dispute_before_issue",
        "invalid_currency",
        "future_date",
        "issue_after_observed_until",
        "paid_after_observed_until",
        "dispute_after_observed_until",
    ),
    "events": (
        "missing_buyer_id",
        "missing_event_date",
        "missing_event_type",
        "unparseable_event_date",
        "unknown_buyer_id",
        "buyer_rejected",
        "unknown_event_type",
        "future_date",
        "event_after_observed_until",
    ),
    "exposures": (
        "missing_buyer_id",
        "missing_current_limit",
        "unparseable_current_limit",
        "unparseable_requested_limit",
        "duplicate_exposure",
        "unknown_buyer_id",
        "buyer_rejected",
        "current_limit_not_finite",
        "current_limit_negative",
        "requested_limit_not_finite",
        "requested_limit_negative",
        "invalid_currency",
    ),
}

#: The rules that compare a date with ``observed_until``; they are left out while
#: ``observed_until`` is being inferred (see ``validation.validate_tables``).
OBSERVED_UNTIL_RULES: frozenset[str] = frozenset(
    {"issue_after_observed_until", "paid_after_observed_until", "dispute_after_observed_until",
     "event_after_observed_until"}
)
#: The rule of each table that keeps the first occurrence of a key and rejects the others.
DUPLICATE_RULES: dict[str, str] = {
    "buyers": "duplicate_buyer_id",
    "invoices": "duplicate_invoice_id",
    "exposures": "duplicate_exposure",
}

# ISO 3166-1 alpha-2: officially assigned codes, plus the user-assigned ranges (AA, QM-QZ,
# XA-XZ, ZZ) that exports use for "unknown" or private codes.
_ISO_3166_ASSIGNED = """
AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR
BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ
EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW
GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY
KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV
MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY
QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG
TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM
ZW
""".split()
_ISO_3166_USER_ASSIGNED = (
    ["AA", "ZZ"]
    + [f"Q{c}" for c in "MNOPQRSTUVWXYZ"]
    + [f"X{c}" for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"]
)
COUNTRY_CODES: frozenset[str] = frozenset(_ISO_3166_ASSIGNED + _ISO_3166_USER_ASSIGNED)

#: ISO 4217 codes are three upper-case Latin letters; the format is what is checked.
CURRENCY_PATTERN = r"^[A-Z]{3}$"


def is_optional_table(table: str) -> bool:
    return table in OPTIONAL_TABLES


def column_names(table: str) -> list[str]:
    return [c.name for c in TABLE_COLUMNS[table]]


def required_columns(table: str) -> list[str]:
    return [c.name for c in TABLE_COLUMNS[table] if c.required]
