"""The one exception for input that breaks the contract at the level of a file or a column."""

from __future__ import annotations


class ContractError(ValueError):
    """A table or column breaks the raw data contract; nothing can be accepted from it.

    The message names the file, the column, the rule and (where there is one) the bad value,
    and says how to fix it. The CLI turns it into exit code 2.
    """

    def __init__(
        self, path: str, rule: str, detail: str, column: str | None = None, fix: str = ""
    ) -> None:
        self.path = path
        self.column = column
        self.rule = rule
        where = f"{path}: column {column}" if column else path
        message = f"{where}: {rule}: {detail}"
        if fix:
            message += f" ({fix})"
        super().__init__(message)
