"""Everything that talks to MLflow: tracking, the pyfunc model format, the model registry and
promotion by declared gates. The rest of the package never imports mlflow.

The store (:class:`Store`) does not depend on the working directory: the tracking URI is
``MLFLOW_TRACKING_URI`` when set, else the SQLite database ``<project_dir>/mlflow.db`` (never
the deprecated file store). Artifacts of a local store go to ``MLFLOW_ARTIFACT_ROOT`` (a
relative value is taken relative to ``project_dir``) or ``<project_dir>/mlartifacts``, set on
the experiment when it is created; a tracking server stores them where it is configured to.
``project_dir`` is given by the caller (the command line passes the folder of the params file
in use); ``None`` means the working directory.

Every call talks to MLflow through an explicit :class:`~mlflow.tracking.MlflowClient` of
that store: nothing here sets MLflow's process-wide tracking URI (which MLflow would also
write into ``MLFLOW_TRACKING_URI`` of the process, so that the next call with another
``project_dir`` would silently use the first store).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import mlflow
import numpy as np
import pandas as pd
import yaml
from mlflow.entities import Metric, Param, RunStatus
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.pyfunc import PythonModel
from mlflow.tracking import MlflowClient
from mlflow.types import ColSpec, Schema, TensorSpec

from riskmodel.features import ID_COLUMNS
from riskmodel.modeling.evaluation import discrimination
from riskmodel.modeling.model import (
    ARTIFACT_KEY,
    FILES,
    FeatureMismatchError,
    RiskModel,
    content_hash,
    load_model_dir,
)
from riskmodel.modeling.training import HOLDOUT_FOLDER, load_holdout

CHALLENGER = "challenger"
CHAMPION = "champion"
#: model-version tag holding :func:`riskmodel.modeling.model.content_hash` of the model files
HASH_TAG = "model_sha256"
#: the label column of a test frame given to :func:`promote`
LABEL = "bad"
_MODEL_CODE = str(Path(__file__).with_name("mlflow_model.py"))


class RegistryError(ValueError):
    """The registry does not hold what the operation needs (e.g. no model to promote)."""


class ModelDirError(ValueError):
    """A model directory cannot be written where asked (the folder there is not one)."""


# --------------------------------------------------------------------------- the store


@dataclass(frozen=True)
class Store:
    """Where MLflow data live: the tracking (and registry) URI and, for a local store, the
    artifact root of new experiments (``None`` for a tracking server)."""

    tracking_uri: str
    artifact_root: Path | None

    @classmethod
    def at(cls, project_dir: str | Path | None = None) -> Store:
        base = Path(project_dir if project_dir is not None else Path.cwd()).resolve()
        uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{base / 'mlflow.db'}"
        root = None
        if _local_store(uri):
            root = base / os.environ.get("MLFLOW_ARTIFACT_ROOT", "mlartifacts")
        return cls(uri, root)

    def client(self) -> MlflowClient:
        _quiet()
        return MlflowClient(self.tracking_uri, self.tracking_uri)


def tracking_uri(project_dir: str | Path | None = None) -> str:
    """``MLFLOW_TRACKING_URI`` if set, else ``sqlite:///<project_dir>/mlflow.db`` (absolute;
    ``project_dir`` None: the working directory)."""
    return Store.at(project_dir).tracking_uri


def _local_store(uri: str) -> bool:
    return not uri.startswith(("http://", "https://", "databricks"))


def _quiet() -> None:
    """No artifact progress bars and no database set-up lines in batch logs (set when used,
    never at import): a user can act on none of them."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    for name in ("alembic", "mlflow.store.db.utils", "mlflow.store.sqlalchemy_store"):
        logging.getLogger(name).setLevel(logging.WARNING)


def ensure_experiment(name: str, *, project_dir: str | Path | None = None) -> str:
    """The id of experiment ``name`` in the store of ``project_dir``, created if needed."""
    store = Store.at(project_dir)
    client = store.client()
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return str(exp.experiment_id)
    location = store.artifact_root.as_uri() if store.artifact_root is not None else None
    return str(client.create_experiment(name, artifact_location=location))


# --------------------------------------------------------------------------- pyfunc


class RiskPyfunc(PythonModel):
    """MLflow wrapper of :class:`riskmodel.modeling.model.RiskModel`."""

    def load_context(self, context: Any) -> None:
        self.model = RiskModel.load(context.artifacts[ARTIFACT_KEY])

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> pd.DataFrame:
        """``pd``, ``grade``, ``margin`` per row, in the order of the rows. Rows the model
        cannot score (``status`` empty or not ``active``/``in_default``) raise an
        ``INVALID_PARAMETER_VALUE`` MlflowException that names the problem: ``mlflow models
        serve`` answers it with HTTP 400 and that message, where any other exception would
        be a generic "unexpected error" with the reason only in a stack trace."""
        try:
            return self.model.predict(model_input).reset_index(drop=True)
        except FeatureMismatchError as exc:
            raise MlflowException.invalid_parameter_value(str(exc)) from exc


def signature(model: RiskModel) -> ModelSignature:
    """Inputs: every model feature and ``status`` required, ``buyer_id`` and ``as_of``
    optional; outputs ``pd``, ``grade``, ``margin``."""
    cols: list[ColSpec | TensorSpec] = [
        ColSpec("string", "buyer_id", required=False),
        ColSpec("datetime", "as_of", required=False),
        ColSpec("string", "status", required=True),
    ]
    for name in model.spec.names:
        cols.append(ColSpec("string" if name in model.spec.categories else "double", name,
                            required=True))
    outputs: list[ColSpec | TensorSpec] = [
        ColSpec("double", "pd"), ColSpec("string", "grade"), ColSpec("double", "margin")]
    return ModelSignature(inputs=Schema(cols), outputs=Schema(outputs))


def is_model_dir(path: str | Path) -> bool:
    """Whether ``path`` is a model directory this project wrote: an ``MLmodel`` file whose
    ``python_function`` flavour has the artifact :data:`ARTIFACT_KEY`, and every model file
    (:data:`FILES`) under ``artifacts/<ARTIFACT_KEY>/``."""
    path = Path(path)
    files = path / "artifacts" / ARTIFACT_KEY
    if not (path / "MLmodel").is_file():
        return False
    if not all((files / f).is_file() for f in FILES.values()):
        return False
    try:
        spec = yaml.safe_load((path / "MLmodel").read_text(encoding="utf-8"))
        artifacts = spec["flavors"]["python_function"]["artifacts"]
    except (OSError, UnicodeDecodeError, yaml.YAMLError, KeyError, TypeError):
        return False
    return isinstance(artifacts, dict) and ARTIFACT_KEY in artifacts


def check_replaceable(path: str | Path) -> None:
    """Raise :class:`ModelDirError` unless :func:`save_pyfunc` may write ``path``: it is
    missing, an empty folder, or a model directory (:func:`is_model_dir`). Cheap: call it
    before training, so that a wrong ``--out`` fails at once."""
    path = Path(path)
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise ModelDirError(
            f"{path} exists and is not a folder: refusing to replace it with a model "
            "directory; give another output path or remove it yourself"
        )
    if path.is_dir() and any(path.iterdir()) and not is_model_dir(path):
        raise ModelDirError(
            f"{path} is a folder that is not a riskmodel model directory (no MLmodel with "
            f"artifacts/{ARTIFACT_KEY}/{FILES['booster']} and the other model files): "
            "refusing to delete it; give another output path, or empty or remove the folder "
            "yourself"
        )


def _write_pyfunc(model: RiskModel, path: Path, extra_files: Mapping[str, Any],
                  holdout: RiskModel | None = None) -> None:
    """An MLflow pyfunc model directory at ``path`` (which must not exist)."""
    with tempfile.TemporaryDirectory() as tmp:
        files = Path(tmp) / ARTIFACT_KEY
        model.save(files)
        if holdout is not None:
            holdout.save(files / HOLDOUT_FOLDER)
        for name, data in extra_files.items():
            (files / name).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        with warnings.catch_warnings():
            # the signature is given explicitly, so MLflow's advice to add an input example
            # (printed with raw colour codes) says nothing a user could act on
            warnings.filterwarnings("ignore", message=".*input example was not provided")
            mlflow.pyfunc.save_model(
                path=str(path), python_model=_MODEL_CODE, artifacts={ARTIFACT_KEY: str(files)},
                signature=signature(model), pip_requirements=_requirements(),
            )


def save_pyfunc(model: RiskModel, path: str | Path,
                extra_files: Mapping[str, Any] | None = None,
                holdout: RiskModel | None = None) -> None:
    """Write an MLflow pyfunc model directory holding the model files (and ``extra_files``,
    JSON documents such as the training metadata, beside them; and the ``holdout`` model,
    the one the test figures are of, in a folder beside them).

    ``path`` may be missing, an empty folder, or a model directory written before (see
    :func:`is_model_dir`), which is replaced; anything else raises :class:`ModelDirError`
    and is left untouched. The new directory is written beside ``path`` first and moved
    into place, so a failed save leaves the old one as it was."""
    path = Path(path)
    _quiet()
    check_replaceable(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        _write_pyfunc(model, staging / "model", extra_files or {}, holdout)
        if path.exists():
            shutil.rmtree(path)
        os.replace(staging / "model", path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


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
    """The registered version a training ended in. ``new_version`` is False when the model
    was identical (same :data:`HASH_TAG`) to the latest registered version, which was then
    reused: no run was logged and ``run_id`` is that version's run."""

    run_id: str
    model_name: str
    version: str
    new_version: bool = True
    model_sha256: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


REGISTRATION_FILE = "registry.json"


def write_registration(model_dir: str | Path, reg: Registered) -> Path:
    """Write ``registry.json`` into a model directory: which run and registered version it
    is (``run_id``, ``model_name``, ``version``, ``new_version``, ``model_sha256``)."""
    path = Path(model_dir) / REGISTRATION_FILE
    data = {"run_id": reg.run_id, "model_name": reg.model_name, "version": reg.version,
            "new_version": reg.new_version, "model_sha256": reg.model_sha256}
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return path


def read_registration(model_dir: str | Path) -> dict[str, Any] | None:
    """The ``registry.json`` of a model directory, or None when it was not registered."""
    path = Path(model_dir) / REGISTRATION_FILE
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or "run_id" not in data:
        raise RegistryError(f"{path}: not a registration (no run_id)")
    return data


def _metrics(values: Mapping[str, Any]) -> list[Metric]:
    now = int(time.time() * 1000)
    return [Metric(k, float(v), now, 0) for k, v in values.items()
            if isinstance(v, int | float) and v == v]


def _chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def _latest_version(client: MlflowClient, model_name: str) -> Any | None:
    found = client.search_model_versions(
        f"name = '{model_name}'", max_results=1, order_by=["version_number DESC"])
    return found[0] if found else None


def _ensure_registered_model(client: MlflowClient, model_name: str) -> None:
    try:
        client.get_registered_model(model_name)
    except MlflowException:
        client.create_registered_model(model_name)


def log_training(
    model: RiskModel,
    params: dict[str, Any],
    metrics: dict[str, float],
    tags: dict[str, str],
    artifacts: Mapping[str, Any],
    experiment: str,
    model_name: str,
    *,
    project_dir: str | Path | None = None,
    holdout: RiskModel | None = None,
) -> Registered:
    """Log one MLflow run (params, metrics, tags, JSON artifacts, the pyfunc model under
    ``model/``, with its ``holdout`` model beside it), register the model under
    ``model_name`` with the tag :data:`HASH_TAG`, and point the alias ``challenger`` at it.

    If the model files are identical to the latest registered version's (same
    :data:`HASH_TAG`), nothing is logged or registered: the alias ``challenger`` is moved to
    (or stays on) that version and it is returned with ``new_version=False``."""
    store = Store.at(project_dir)
    client = store.client()
    with tempfile.TemporaryDirectory() as tmp:
        pyfunc_dir = Path(tmp) / "model"
        _write_pyfunc(model, pyfunc_dir, {}, holdout)
        digest = content_hash(pyfunc_dir / "artifacts" / ARTIFACT_KEY)

        latest = _latest_version(client, model_name)
        if latest is not None and latest.tags.get(HASH_TAG) == digest:
            client.set_registered_model_alias(model_name, CHALLENGER, latest.version)
            return Registered(str(latest.run_id), model_name, str(latest.version),
                              new_version=False, model_sha256=digest)

        exp_id = ensure_experiment(experiment, project_dir=project_dir)
        run = client.create_run(exp_id, tags=dict(tags))
        run_id = run.info.run_id
        try:
            flat = [Param(k, v) for k, v in flatten_params(params).items()]
            for part in _chunks(flat, 100):
                client.log_batch(run_id, params=part)
            client.log_batch(run_id, metrics=_metrics(metrics))
            for name, data in artifacts.items():
                client.log_dict(run_id, data, name)
            client.log_artifacts(run_id, str(pyfunc_dir), "model")
            _ensure_registered_model(client, model_name)
            mv = client.create_model_version(
                model_name, source=f"{run.info.artifact_uri}/model", run_id=run_id,
                tags={HASH_TAG: digest},
            )
            client.set_registered_model_alias(model_name, CHALLENGER, mv.version)
        except BaseException:
            client.set_terminated(run_id, RunStatus.to_string(RunStatus.FAILED))
            raise
        client.set_terminated(run_id)
    return Registered(run_id, model_name, str(mv.version), new_version=True,
                      model_sha256=digest)


def log_evaluation(run_id: str, metrics: dict[str, float], files: list[Path], *,
                   project_dir: str | Path | None = None) -> None:
    """Add the validation metrics and report files (under ``evaluation/``) to the run."""
    client = Store.at(project_dir).client()
    client.log_batch(run_id, metrics=_metrics(metrics))
    for f in files:
        client.log_artifact(run_id, str(f), artifact_path="evaluation")


# --------------------------------------------------------------------------- promotion


class Gates(Protocol):
    """The promotion limits (``riskmodel.params.PromoteParams``)."""

    @property
    def min_auc(self) -> float: ...
    @property
    def max_auc_drop(self) -> float: ...
    @property
    def max_ece(self) -> float: ...
    @property
    def max_score_psi(self) -> float: ...


@dataclass
class Decision:
    """``comparison``: ``challenger_auc``, ``champion_auc`` and ``test_rows`` of both models
    scored on the same test frame, when a different champion was compared."""

    promoted: bool
    challenger: str
    champion_before: str | None
    gates: list[dict[str, Any]]
    comparison: dict[str, Any] | None = None

    def failed(self) -> list[dict[str, Any]]:
        return [g for g in self.gates if not g["passed"]]

    def to_dict(self) -> dict[str, Any]:
        return {"promoted": self.promoted, "challenger": self.challenger,
                "champion_before": self.champion_before, "gates": self.gates,
                "comparison": self.comparison}


def load_registered(model_name: str, alias_or_version: str, *,
                    project_dir: str | Path | None = None, holdout: bool = False
                    ) -> RiskModel:
    """The library model of a registered version (an alias such as ``'champion'``, or a
    version number), from its registered artifacts; with ``holdout``, its holdout model
    (fitted without its test dates; the model itself when it has none)."""
    store = Store.at(project_dir)
    client = store.client()
    ref = alias_or_version
    mv = (client.get_model_version(model_name, ref) if ref.isdigit()
          else client.get_model_version_by_alias(model_name, ref))
    # resolved through this store's client: MLflow's ``models:/`` artifact repository would
    # look the name up in the process-wide registry instead
    source = client.get_model_version_download_uri(model_name, str(mv.version))
    with tempfile.TemporaryDirectory() as tmp:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=source, dst_path=tmp, tracking_uri=store.tracking_uri,
            registry_uri=store.tracking_uri)
        return load_holdout(local) if holdout else load_model_dir(local)


def _labelled(test_frame: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    if LABEL not in test_frame.columns:
        raise RegistryError(f"the test frame has no label column {LABEL!r}")
    rows = test_frame[test_frame[LABEL].notna()]
    y = rows[LABEL].astype(float).to_numpy()
    if len(y) == 0 or y.min() == y.max():
        raise RegistryError(f"the test frame needs labelled rows of both classes to compare "
                            f"AUCs ({len(y)} labelled rows, {int(y.sum())} bad)")
    return rows, y


def _auc_on(model: RiskModel, rows: pd.DataFrame, y: np.ndarray) -> float:
    """AUC of the model's PD (as ``evaluate`` computes ``test_auc``) on the rows; raises
    FeatureMismatchError naming what the model lacks."""
    missing = [c for c in model.spec.names if c not in rows.columns]
    if missing:
        raise FeatureMismatchError(f"missing feature columns {missing}")
    cols = [c for c in ID_COLUMNS if c in rows.columns] + list(model.spec.names)
    pdv = model.predict(rows[cols])["pd"].to_numpy(dtype=float)
    return float(discrimination(y, pdv)["auc"])


def _versus_champion(challenger: RiskModel, champion: RiskModel, test_frame: pd.DataFrame,
                     max_drop: float) -> tuple[dict[str, Any], dict[str, Any] | None]:
    name = "test_auc_vs_champion"
    rows, y = _labelled(test_frame)
    aucs = {}
    for who, model in (("challenger", challenger), ("champion", champion)):
        try:
            aucs[who] = _auc_on(model, rows, y)
        except FeatureMismatchError as exc:
            return {"gate": name, "passed": False, "test_rows": len(rows),
                    "detail": f"the {who} cannot score the test set: {exc}"}, None
    limit = aucs["champion"] - max_drop
    ok = aucs["challenger"] >= limit
    comparison = {"challenger_auc": aucs["challenger"], "champion_auc": aucs["champion"],
                  "test_rows": len(rows)}
    gate = {"gate": name, "passed": bool(ok), "value": aucs["challenger"], "limit": limit,
            **comparison,
            "detail": f"{aucs['challenger']:.4f} >= champion {aucs['champion']:.4f} - "
                      f"{max_drop:.4f} on the same {len(rows):,} test rows"}
    return gate, comparison


def promote(model_name: str, gates: Gates, *, test_frame: pd.DataFrame | None = None,
            project_dir: str | Path | None = None,
            expected_challenger: str | None = None) -> Decision:
    """Move alias ``champion`` to the challenger if it passes every gate.

    Absolute gates, on the challenger's logged evaluation metrics: ``test_auc >= min_auc``,
    ``test_ece <= max_ece``, ``score_psi <= max_score_psi``. When a champion other than the
    challenger exists, both registered models' holdout models (fitted without their test
    dates) are scored on ``test_frame`` (the current out-of-time test set: feature, ID and ``bad`` columns; rows without a label are skipped)
    and the gate ``test_auc_vs_champion`` needs ``challenger AUC >= champion AUC -
    max_auc_drop``; it fails when ``test_frame`` is None or a model cannot score it. A
    challenger that already is the champion is left as it is.

    Raises :class:`RegistryError` when there is no registered model ``model_name`` or it has
    no ``challenger`` alias, or ``test_frame`` has no labelled rows of both classes, or the
    challenger is not ``expected_challenger`` (the version of the model directory whose test
    set is given), or a local store does not exist (it is never created here).
    """
    store = Store.at(project_dir)
    if store.tracking_uri.startswith("sqlite:///"):
        db = Path(store.tracking_uri.removeprefix("sqlite:///"))
        if not db.exists():
            raise RegistryError(f"no MLflow store at {db}: run train first (or set "
                                "MLFLOW_TRACKING_URI)")
    client = store.client()
    try:
        registered = client.get_registered_model(model_name)
    except MlflowException as exc:
        raise RegistryError(f"no registered model {model_name!r} in {store.tracking_uri}: "
                            "run train first") from exc
    aliases = dict(registered.aliases)
    if CHALLENGER not in aliases:
        raise RegistryError(f"registered model {model_name!r} in {store.tracking_uri} has no "
                            f"{CHALLENGER!r} alias: run train first")
    version = str(aliases[CHALLENGER])
    if expected_challenger is not None and str(expected_challenger) != version:
        raise RegistryError(f"the challenger of {model_name!r} is version {version}, but the "
                            f"model directory given is version {expected_challenger}: promote "
                            "the model you trained last, or move the alias")
    mv = client.get_model_version(model_name, version)
    m = dict(client.get_run(mv.run_id).data.metrics) if mv.run_id else {}

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
    champ_version = str(aliases[CHAMPION]) if CHAMPION in aliases else None
    comparison = None
    if champ_version is not None and champ_version != version:
        if test_frame is None:
            results.append({"gate": "test_auc_vs_champion", "passed": False,
                            "detail": "no test set given: the champion is compared by "
                                      "scoring both models on the current test set"})
        else:
            _labelled(test_frame)  # a bad test frame is an error before any download
            # the holdout models: a shipped model refit on every labelled date may have
            # seen the test dates, which would flatter it
            chal_model = load_registered(model_name, version, project_dir=project_dir,
                                         holdout=True)
            champ_model = load_registered(model_name, champ_version, project_dir=project_dir,
                                          holdout=True)
            result, comparison = _versus_champion(chal_model, champ_model, test_frame,
                                                  gates.max_auc_drop)
            results.append(result)
    passed = all(r["passed"] for r in results)
    if passed and champ_version != version:
        client.set_registered_model_alias(model_name, CHAMPION, version)
    return Decision(passed, version, champ_version, results, comparison)


__all__ = ["CHALLENGER", "CHAMPION", "HASH_TAG", "Decision", "Gates", "ModelDirError",
           "Registered", "RegistryError", "RiskPyfunc", "Store", "check_replaceable",
           "ensure_experiment", "is_model_dir", "load_registered", "log_evaluation",
           "log_training", "promote", "read_registration", "save_pyfunc", "tracking_uri",
           "write_registration"]


# --------------------------------------------------------------------------- scoring


@dataclass(frozen=True)
class FetchedModel:
    """A model ready to score with: a local model folder and where it came from."""

    path: Path
    model_name: str
    version: str
    run_id: str
    uri: str


def fetch_model(uri: str, dst: str | Path, *, project_dir: str | Path | None = None
                ) -> FetchedModel:
    """A model for batch scoring: a model folder (``riskmodel train --out``; its
    ``registry.json`` names the registered version, when it was registered), ``runs:/<run
    id>/<path>``, or ``models:/<name>@<alias>`` / ``models:/<name>/<version>`` of the
    project's store, downloaded into ``dst``. Raises :class:`RegistryError` with the reason
    when it cannot be found."""
    local = Path(uri)
    if not uri.startswith(("models:/", "runs:/")):
        if not local.exists():
            raise RegistryError(f"--model {uri}: no such model folder (give a folder from "
                                "`riskmodel train --out`, runs:/<run id>/<path> or "
                                "models:/<name>@<alias>)")
        if not is_model_dir(local):
            raise RegistryError(f"--model {uri}: not a model folder (no MLmodel with "
                                f"artifacts/{ARTIFACT_KEY}/)")
        reg = read_registration(local) or {}
        return FetchedModel(local, str(reg.get("model_name", "")), str(reg.get("version", "")),
                            str(reg.get("run_id", "")), uri)
    store = Store.at(project_dir)
    if store.tracking_uri.startswith("sqlite:///"):
        db = Path(store.tracking_uri.removeprefix("sqlite:///"))
        if not db.exists():  # a lookup would create an empty store
            raise RegistryError(f"--model {uri}: no MLflow store at {db}: train and promote a "
                                "model first (or set MLFLOW_TRACKING_URI, or give a model "
                                "folder: --model models/buyer-risk)")
    client = store.client()
    dst = Path(dst)
    try:
        if uri.startswith("models:/"):
            name, sep, alias = uri[len("models:/"):].partition("@")
            if not sep:
                name, _, alias = name.partition("/")
            if not name or not alias:
                raise RegistryError(f"--model {uri}: expected models:/<name>@<alias> or "
                                    "models:/<name>/<version>")
            try:
                mv = (client.get_model_version(name, alias) if alias.isdigit()
                      else client.get_model_version_by_alias(name, alias))
            except MlflowException as exc:
                what = f"version {alias}" if alias.isdigit() else f"the alias {alias!r}"
                raise RegistryError(
                    f"--model {uri}: no version of model {name!r} carries {what} in the "
                    f"tracking store {store.tracking_uri} (promote one with `riskmodel "
                    "promote`, or give a model folder: --model models/buyer-risk)") from exc
            source = client.get_model_version_download_uri(name, str(mv.version))
            run_id, version = str(mv.run_id or ""), str(mv.version)
        else:
            run_id = uri[len("runs:/"):].split("/", 1)[0]
            source = uri
            found = client.search_model_versions(f"run_id='{run_id}'")
            name = str(found[0].name) if found else ""
            version = str(found[0].version) if found else ""
        dst.mkdir(parents=True, exist_ok=True)
        path = Path(mlflow.artifacts.download_artifacts(
            artifact_uri=source, dst_path=str(dst), tracking_uri=store.tracking_uri,
            registry_uri=store.tracking_uri))
    except MlflowException as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RegistryError(f"--model {uri}: not found in the tracking store "
                            f"{store.tracking_uri}: {first}") from exc
    if not is_model_dir(path):
        raise RegistryError(f"--model {uri}: the artifacts there are not a riskmodel model "
                            f"(no MLmodel with artifacts/{ARTIFACT_KEY}/)")
    return FetchedModel(path, name, version, run_id, uri)
