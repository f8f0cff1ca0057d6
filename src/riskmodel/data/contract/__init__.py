"""The raw data contract (version 1.1): read, map, type and validate the raw tables.

The three required tables are ``buyers``, ``invoices`` and ``events``; ``exposures`` is
optional. :func:`load_dataset` is what every command calls; the steps it is made of
(:func:`type_table`, :func:`check_wrong_types`, :func:`split_table`,
:func:`infer_observed_until`) are public for callers that validate batch by batch.
"""

from riskmodel.data.contract.errors import ContractError
from riskmodel.data.contract.mapping import Mapping, load_mapping
from riskmodel.data.contract.reader import RawTable, read_tables
from riskmodel.data.contract.schema import (
    ALL_TABLES,
    CONTRACT_VERSION,
    EVENT_TYPES,
    OPTIONAL_TABLES,
    RULES,
    TABLE_COLUMNS,
    TABLES,
)
from riskmodel.data.contract.validation import (
    RuleContext,
    TableResult,
    TypedTable,
    TypeStats,
    ValidationResult,
    check_observed_until,
    check_wrong_types,
    contract_schema,
    infer_observed_until,
    latest_observation,
    load_dataset,
    split_table,
    type_table,
    validate_tables,
)

__all__ = [
    "ALL_TABLES",
    "CONTRACT_VERSION",
    "EVENT_TYPES",
    "OPTIONAL_TABLES",
    "RULES",
    "TABLES",
    "TABLE_COLUMNS",
    "ContractError",
    "Mapping",
    "RawTable",
    "RuleContext",
    "TableResult",
    "TypeStats",
    "TypedTable",
    "ValidationResult",
    "check_observed_until",
    "check_wrong_types",
    "contract_schema",
    "infer_observed_until",
    "latest_observation",
    "load_dataset",
    "load_mapping",
    "read_tables",
    "split_table",
    "type_table",
    "validate_tables",
]
