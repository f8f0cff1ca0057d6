"""Batch scoring of a whole book at one as-of date.

:mod:`riskmodel.scoring.unit` holds the unit of work (one bucket of the book), the same
function for every engine; :mod:`riskmodel.scoring.local` runs the units in this process,
:mod:`riskmodel.scoring.spark` inside Apache Spark; :mod:`riskmodel.scoring.job` plans a run
(staging folder, lineage, the whole-book context between the two passes) and publishes its
output atomically. Nothing here imports MLflow: the model comes as a local model folder
(:func:`riskmodel.pipeline.score` resolves registry URIs first).
"""
