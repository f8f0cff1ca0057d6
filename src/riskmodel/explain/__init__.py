"""Explanations of the PD model: exact per-feature contributions (TreeSHAP, in the log-odds of
the uncalibrated model), reason codes in words, and the analyst report.

Modules: ``contributions`` (exact contributions, fast for the shallow trees this model has),
``reasons`` (grouping by concept, ranking, texts from the feature catalogue), ``plots``
(global importance, beeswarm, dependence, waterfall) and ``report`` (the offline HTML
report). The feature catalogue lives in :mod:`riskmodel.features.catalogue`.
"""
