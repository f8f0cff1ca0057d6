"""Decisions on top of the scores: credit limits, payment terms, the portfolio and the watch list."""
