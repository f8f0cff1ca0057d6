"""Everything that talks to MLflow: tracking, the pyfunc model format, the model registry and
promotion by declared gates. The rest of the package never imports mlflow.

Tracking URI: ``MLFLOW_TRACKING_URI`` when set, else a SQLite database ``mlflow.db`` in the
working directory (never the deprecated file store). Artifacts of a local store go to
``MLFLOW_ARTIFACT_ROOT`` or ``./mlartifacts`` (absolute), set on the experiment explicitly;
a tracking server stores them where it is configured to.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.tracking import MlflowClient
from mlflow.types import ColSpec, Schema

from riskmodel.modeling.model import ARTIFACT_KEY, RiskModel

CHALLENGER = "challenger"
_MODEL_CODE = str(Path(__file__).with_name("mlflow_model.py"))
CHAMPION = "champion"


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path('mlflow.db').resolve()}"


def _local_store(uri: str) -> bool:
    return not uri.startswith(("http://", "https://", "databricks"))


def _quiet() -> None:
    """No artifact progress bars in batch logs (set when used, never at import)."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def configure() -> MlflowClient:
    _quiet()
    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient(uri, uri)


def ensure_experiment(name: str) -> str:
    client = configure()
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    location = None
    if _local_store(tracking_uri()):
        root = Path(os.environ.get("MLFLOW_ARTIFACT_ROOT", "mlartifacts")).resolve()
        location = root.as_uri()
    return client.create_experiment(name, artifact_location=location)


# --------------------------------------------------------------------------- pyfunc


class RiskPyfunc(mlflow.pyfunc.PythonModel):
    """MLflow wrapper of :class:`riskmodel.modeling.model.RiskModel`."""

    def load_context(self, context: Any) -> None:
        self.model = RiskModel.load(context.artifacts[ARTIFACT_KEY])

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> pd.DataFrame:
        return self.model.predict(model_input).reset_index(drop=True)


def signature(model: RiskModel) -> ModelSignature:
    cols = [ColSpec("string", "buyer_id", required=False),
            ColSpec("datetime", "as_of", required=False),
            ColSpec("string", "status", required=False)]
    for name in model.spec.names:
        cols.append(ColSpec("string" if name in model.spec.categories else "double", name,
                            required=True))
    outputs = Schema([ColSpec("double", "pd"), ColSpec("string", "grade"),
                      ColSpec("double", "margin")])
    return ModelSignature(inputs=Schema(cols), outputs=outputs)


def save_pyfunc(model: RiskModel, path: str | Path, extra_files: Mapping[str, Any]) -> None:
    """Write an MLflow pyfunc model directory holding the model files (and ``extra_files``,
    JSON documents such as the training metadata, beside them)."""
    path = Path(path)
    _quiet()
    if path.exists():
        shutil.rmtree(path)
    with tempfile.TemporaryDirectory() as tmp:
        files = Path(tmp) / ARTIFACT_KEY
        model.save(files)
        for name, data in extra_files.items():
            (files / name).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        mlflow.pyfunc.save_model(
            path=str(path), python_model=_MODEL_CODE, artifacts={ARTIFACT_KEY: str(files)},
            signature=signature(model), pip_requirements=_requirements(),
        )


def _requirements() -> list[str]:
    from importlib.metadata import version

    pkgs = ["lightgbm", "pandas", "numpy", "scikit-learn", "mlflow"]
    return [f"{p}=={version(p)}" for p in pkgs] + [f"riskmodel=={version('riskmodel')}"]


# --------------------------------------------------------------------------- runs


def flatten_params(params: dict[str, Any]) -> dict[str, str]:
    """``section.key`` -> value; nested values (lists, per-feature maps) as JSON text, whose
    keys MLflow would not accept as parameter names."""
    out: dict[str, str] = {}
    for section, values in params.items():
        items = values.items() if isinstance(values, dict) else [("", values)]
        for key, value in items:
            name = f"{section}.{key}" if key else section
            text = json.dumps(value, sort_keys=True) if isinstance(value, dict | list) else str(
                value)
            out[name] = text[:6000]  # MLflow's limit for one value
    return out


@dataclass
class Registered:
    run_id: str
    model_name: str
    version: str
    extra: dict[str, Any] = field(default_factory=dict)


def log_training(
    model: RiskModel,
    params: dict[str, Any],
    metrics: dict[str, float],
    tags: dict[str, str],
    artifacts: Mapping[str, Any],
    experiment: str,
    model_name: str,
    input_example: pd.DataFrame | None = None,
) -> Registered:
    """One MLflow run: params, metrics, tags, JSON artifacts and the model; the model is
    registered under ``model_name`` and given the alias ``challenger``."""
    exp_id = ensure_experiment(experiment)
    client = configure()
    with mlflow.start_run(experiment_id=exp_id) as run, tempfile.TemporaryDirectory() as tmp:
        mlflow.log_params(flatten_params(params))
        mlflow.log_metrics({k: float(v) for k, v in metrics.items()})
        mlflow.set_tags(tags)
        for name, data in artifacts.items():
            mlflow.log_dict(data, name)
        files = Path(tmp) / ARTIFACT_KEY
        model.save(files)
        info = mlflow.pyfunc.log_model(
            name="model", python_model=_MODEL_CODE, artifacts={ARTIFACT_KEY: str(files)},
            signature=signature(model), pip_requirements=_requirements(),
        )
        mv = mlflow.register_model(info.model_uri, model_name)
    client.set_registered_model_alias(model_name, CHALLENGER, mv.version)
    return Registered(run.info.run_id, model_name, str(mv.version))


def log_evaluation(run_id: str, metrics: dict[str, float], files: list[Path]) -> None:
    """Add the validation metrics and report files to the training run."""
    configure()
    with mlflow.start_run(run_id=run_id):
        mlflow.log_metrics({k: float(v) for k, v in metrics.items()
                            if isinstance(v, int | float) and v == v})
        for f in files:
            mlflow.log_artifact(str(f), artifact_path="evaluation")


# --------------------------------------------------------------------------- promotion


@dataclass
class Decision:
    promoted: bool
    challenger: str | None
    champion_before: str | None
    gates: list[dict[str, Any]]

    def failed(self) -> list[dict[str, Any]]:
        return [g for g in self.gates if not g["passed"]]

    def to_dict(self) -> dict[str, Any]:
        return {"promoted": self.promoted, "challenger": self.challenger,
                "champion_before": self.champion_before, "gates": self.gates}


def _version_metrics(client: MlflowClient, name: str, alias: str) -> tuple[str, dict] | None:
    try:
        mv = client.get_model_version_by_alias(name, alias)
    except mlflow.exceptions.MlflowException:
        return None
    run = client.get_run(mv.run_id)
    return str(mv.version), dict(run.data.metrics)


def promote(model_name: str, gates: Any) -> Decision:
    """Move alias ``champion`` to the challenger if it passes every gate.

    Absolute gates: test AUC >= ``min_auc``, ECE <= ``max_ece``, score PSI <=
    ``max_score_psi``. Against a champion: test AUC >= champion's - ``max_auc_drop``.
    A challenger that already is the champion is left as it is.
    """
    client = configure()
    chal = _version_metrics(client, model_name, CHALLENGER)
    if chal is None:
        return Decision(False, None, None, [{"gate": "challenger exists", "passed": False,
                                             "detail": f"no '{CHALLENGER}' alias on "
                                                       f"{model_name}: train first"}])
    version, m = chal
    champ = _version_metrics(client, model_name, CHAMPION)

    def gate(name: str, value: float | None, op: str, limit: float) -> dict[str, Any]:
        if value is None:
            return {"gate": name, "passed": False, "detail": "metric missing: evaluate first"}
        ok = value >= limit if op == ">=" else value <= limit
        return {"gate": name, "passed": bool(ok), "value": value, "limit": limit,
                "detail": f"{value:.4f} {op} {limit:.4f}"}

    results = [
        gate("test_auc", m.get("test_auc"), ">=", gates.min_auc),
        gate("test_ece", m.get("test_ece"), "<=", gates.max_ece),
        gate("score_psi", m.get("score_psi"), "<=", gates.max_score_psi),
    ]
    champ_version = None
    if champ is not None:
        champ_version, cm = champ
        if champ_version != version and "test_auc" in cm:
            results.append(gate("test_auc_vs_champion", m.get("test_auc"), ">=",
                                cm["test_auc"] - gates.max_auc_drop))
    passed = all(r["passed"] for r in results)
    if passed and champ_version != version:
        client.set_registered_model_alias(model_name, CHAMPION, version)
    return Decision(passed, version, champ_version, results)


__all__ = ["Decision", "Registered", "RiskPyfunc", "log_evaluation",
           "log_training", "promote", "save_pyfunc", "tracking_uri"]
