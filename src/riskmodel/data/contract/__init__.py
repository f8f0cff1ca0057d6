"""The raw data contract: read, map, type and validate the three raw tables."""

from riskmodel.data.contract.errors import ContractError
from riskmodel.data.contract.mapping import Mapping, load_mapping
from riskmodel.data.contract.reader import RawTable, read_tables
from riskmodel.data.contract.schema import EVENT_TYPES, RULES, TABLE_COLUMNS, TABLES
from riskmodel.data.contract.validation import (
    RuleContext,
    TableResult,
    ValidationResult,
    contract_schema,
    load_dataset,
    validate_tables,
)

__all__ = [
    "EVENT_TYPES",
    "RULES",
    "TABLES",
    "TABLE_COLUMNS",
    "ContractError",
    "Mapping",
    "RawTable",
    "RuleContext",
    "TableResult",
    "ValidationResult",
    "contract_schema",
    "load_dataset",
    "load_mapping",
    "read_tables",
    "validate_tables",
]
