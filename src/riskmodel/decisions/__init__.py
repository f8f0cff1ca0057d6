"""Decisions on top of the scores: credit limits, payment terms, the portfolio and the watch list.

* :mod:`riskmodel.decisions.limits`: a recommended limit for every credit line of an
  exposures table (a policyholder's line on a buyer), with a decision (approve, reduce,
  decline, refer), reason codes and a sentence a credit manager can send;
* :mod:`riskmodel.decisions.terms`: the longest payment terms recommended per grade, each
  buyer's current terms, and each policyholder's DSO before and after applying them;
* :mod:`riskmodel.decisions.portfolio`: expected loss by industry, country and grade,
  concentration, the policy's economics and the coverage export for a financing bank.

The limits policy is in ``params.yaml`` (sections ``limits``, ``terms``, ``portfolio``) and
is described for credit managers in ``docs/decisions.md``. These modules are core code:
pandas, numpy, pyarrow and DuckDB, no MLflow.
"""
