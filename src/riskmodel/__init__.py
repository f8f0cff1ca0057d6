"""riskmodel: buyer-default risk scoring for trade credit insurance and B2B receivables.

The core (``contract``, ``features``, ``labels``) depends only on numpy, pandas, pyarrow and
DuckDB, so it runs anywhere, Spark workers included. MLflow, shap and pyspark are imported
only by the modules that need them.
"""

__version__ = "0.1.0"
