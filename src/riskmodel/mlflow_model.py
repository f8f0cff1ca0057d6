"""MLflow "model from code" entry: the pyfunc model is this file, not a pickle."""

import mlflow

from riskmodel.registry import RiskPyfunc

mlflow.models.set_model(RiskPyfunc())
