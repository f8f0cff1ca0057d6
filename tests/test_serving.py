"""Online scoring with ``mlflow models serve``, for real: a small model is trained and
registered through the CLI into a temporary project, the champion is served by
``models:/buyer-risk@champion`` on 127.0.0.1, and real HTTP requests are sent to it. The
scores equal those of the model folder; malformed requests get a 4xx whose message names the
problem, and the server goes on serving. One new buyer, scored from its own raw files with
the stored peer context, gets the row (and the PD) the whole book gives it. Last, a tracking
server with MLflow's basic-auth app: only users granted a permission on the registered model
can move its aliases (docs/serving.md).

No test sets MLflow's process-wide tracking URI: every server gets its store through its own
environment or command line, and clients are explicit."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psutil
import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from riskmodel.cli import app
from riskmodel.modeling.model import RiskModel, load_model_dir
from training_helpers import write_params

pytestmark = pytest.mark.slow

MLFLOW = Path(sys.executable).with_name("mlflow")
NAME = "buyer-risk"
HOST = "127.0.0.1"
runner = CliRunner()


def cli(*args: str | Path):
    return runner.invoke(app, [str(a) for a in args])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _clean_env(**extra: str) -> dict[str, str]:
    """No MLflow settings of this process; the venv's bin first on PATH (``mlflow models
    serve`` starts ``uvicorn`` by name, as the docs say)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["PATH"] = os.pathsep.join([str(MLFLOW.parent), env.get("PATH", "")])
    env.update(extra)
    return env


def _stop(proc: subprocess.Popen) -> None:
    """The servers run uvicorn (and a job runner) as children: end the whole process group."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    try:  # children that outlived the parent
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@dataclass
class Server:
    proc: subprocess.Popen
    url: str
    log: Path

    def wait(self, ready: str, limit: float = 150) -> None:
        """Until GET ``url + ready`` answers 200; fails with the log's tail if the server
        exits or is not ready within ``limit`` seconds."""
        deadline = time.monotonic() + limit
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"{self.proc.args} exited {self.proc.returncode}:\n"
                            + self.log.read_text(errors="replace")[-3000:])
            try:
                with urllib.request.urlopen(self.url + ready, timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"{self.proc.args} not ready after {limit:.0f} s:\n"
                            + self.log.read_text(errors="replace")[-3000:])
            time.sleep(0.5)


@contextmanager
def _server(args: list[str], cwd: Path, env: dict[str, str], port: int
            ) -> Iterator[Server]:
    """``mlflow ARGS`` started in its own process group (not waited for: see
    :meth:`Server.wait`); stopped on exit, whatever happens."""
    log = cwd / f"mlflow-{port}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(MLFLOW), *args], cwd=cwd, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield Server(proc, f"http://{HOST}:{port}", log)
    finally:
        _stop(proc)


def _http(method: str, url: str, body: bytes | None = None, *,
          content_type: str = "application/json",
          user: tuple[str, str] | None = None) -> tuple[int, str]:
    headers = {"Content-Type": content_type}
    if user is not None:
        token = base64.b64encode(f"{user[0]}:{user[1]}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    req = urllib.request.Request(url, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


# --------------------------------------------------------------------------- the project


@dataclass
class Project:
    root: Path
    raw: Path
    params: Path
    features: pd.DataFrame
    model: RiskModel


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory,
            auth_started: Server) -> Iterator[Project]:
    """synth -> validate -> features -> labels -> train (registers version 1 in the
    project's own SQLite store), then the champion alias on that version. (The basic-auth
    server of the last test boots meanwhile: it takes longer to start than anything else.)"""
    root = tmp_path_factory.mktemp("serving")
    params = write_params(root / "params.yaml", train={"n_estimators": 60, "search": [{}]})
    raw, book = root / "raw", root / "book"
    feats, labs, model = root / "features.parquet", root / "labels.parquet", root / "model"
    steps = [
        ("synth", "--out", raw, "--buyers", "1200", "--start", "2020-01-01", "--end",
         "2023-12-31", "--seed", "8"),
        ("validate", raw, "--params", params, "--out", book),
        ("features", book, "--params", params, "--out", feats),
        ("labels", book, "--params", params, "--out", labs),
        ("train", book, "--params", params, "--features", feats, "--labels", labs, "--out",
         model),
    ]
    with pytest.MonkeyPatch.context() as mp:
        for key in [k for k in os.environ if k.startswith("MLFLOW_")]:
            mp.delenv(key)
        for step in steps:
            res = cli(*step)
            assert res.exit_code == 0, (step[0], res.output)
        assert f"registered {NAME} version 1, alias challenger" in res.stdout
    store = f"sqlite:///{root / 'mlflow.db'}"
    MlflowClient(store, store).set_registered_model_alias(NAME, "champion", "1")
    yield Project(root, raw, params, pd.read_parquet(feats), load_model_dir(model))


@pytest.fixture(scope="module")
def served(project: Project) -> Iterator[str]:
    """``mlflow models serve -m models:/buyer-risk@champion --env-manager local`` on
    127.0.0.1, the store given by MLFLOW_TRACKING_URI as a user would."""
    port = _free_port()
    env = _clean_env(MLFLOW_TRACKING_URI=f"sqlite:///{project.root / 'mlflow.db'}",
                     MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false")
    args = ["models", "serve", "-m", f"models:/{NAME}@champion", "--env-manager", "local",
            "-h", HOST, "-p", str(port)]
    with _server(args, project.root, env, port) as server:
        server.wait("/ping")
        yield server.url
        assert server.proc.poll() is None, "the scoring server died during the tests"


@pytest.fixture(scope="module")
def rows(project: Project) -> pd.DataFrame:
    """20 live and 5 defaulted buyers at the latest as-of date, as `riskmodel features`
    wrote them."""
    f = project.features
    at = f[f["as_of"] == f["as_of"].max()]
    return pd.concat([at[at["status"] == "active"].head(20),
                      at[at["status"] == "in_default"].head(5)], ignore_index=True)


def _split(frame: pd.DataFrame) -> bytes:
    """A ``dataframe_split`` request: dates as ISO text, missing values as null, every
    float as Python writes it (exact)."""
    values = frame.astype(object).where(frame.notna(), None)
    data = [[v.isoformat() if hasattr(v, "isoformat") else v for v in row]
            for row in values.itertuples(index=False)]
    return json.dumps({"dataframe_split": {"columns": list(frame.columns), "data": data}}
                      ).encode()


def _score(url: str, body: bytes, content_type: str = "application/json") -> pd.DataFrame:
    status, text = _http("POST", f"{url}/invocations", body, content_type=content_type)
    assert status == 200, text[:2000]
    return pd.DataFrame(json.loads(text)["predictions"])


def _assert_same(pred: pd.DataFrame, local: pd.DataFrame) -> None:
    assert list(pred.columns) == ["pd", "grade", "margin"]
    assert len(pred) == len(local)
    assert np.array_equal(pred["pd"].to_numpy(dtype=float), local["pd"].to_numpy())
    assert np.array_equal(pred["margin"].to_numpy(dtype=float), local["margin"].to_numpy())
    assert pred["grade"].tolist() == local["grade"].tolist()


# --------------------------------------------------------------------------- scoring


def test_server_binds_to_loopback_only(served: str) -> None:
    port = int(served.rsplit(":", 1)[1])
    listening = {c.laddr.ip for c in psutil.net_connections(kind="inet")
                 if c.status == psutil.CONN_LISTEN and c.laddr.port == port}
    assert listening == {HOST}


def test_served_champion_scores_like_the_model_folder(
        served: str, project: Project, rows: pd.DataFrame) -> None:
    pred = _score(served, _split(rows))
    local = project.model.predict(rows)
    _assert_same(pred, local)
    # the rows come back in the order sent; buyers in default are D with PD 1
    assert pred["grade"].iloc[-5:].tolist() == ["D"] * 5
    assert (pred["pd"].iloc[-5:] == 1.0).all()
    assert not (pred["grade"].iloc[:20] == "D").any()
    assert pred["grade"].iloc[:20].isin([str(g) for g in range(1, 11)]).all()
    # buyer_id and as_of are optional; the same rows in another order score the same
    bare = rows.drop(columns=["buyer_id", "as_of"]).iloc[::-1]
    _assert_same(_score(served, _split(bare)), local.iloc[::-1])


def test_served_champion_takes_the_features_file_as_parquet(
        served: str, project: Project) -> None:
    """The body may be a Parquet file as `riskmodel features` wrote it (the documented
    curl --data-binary recipe)."""
    path = project.root / "features.parquet"
    pred = _score(served, path.read_bytes(), "application/vnd.apache.parquet")
    _assert_same(pred, project.model.predict(pd.read_parquet(path)))


def _error(status: int, text: str) -> str:
    assert 400 <= status < 500, (status, text[:2000])
    try:
        body = json.loads(text)
    except json.JSONDecodeError:
        return text
    assert "stack_trace" not in body, body  # the reason is in the message, not a traceback
    return str(body["message"])


def _malformed(rows: pd.DataFrame, feature: str) -> dict[str, tuple[bytes, list[str]]]:
    text_in_number = rows.astype({feature: object})
    text_in_number.loc[0, feature] = "twelve"
    return {
        "missing feature": (_split(rows.drop(columns=feature)),
                            ["missing inputs", feature]),
        "missing status": (_split(rows.drop(columns="status")), ["missing inputs", "status"]),
        "text in a numeric feature": (_split(text_in_number),
                                      [feature, "float", "could not convert", "twelve"]),
        "unknown status": (_split(rows.assign(status="closed")),
                           ["'closed'", "expected 'active' or 'in_default'"]),
        "empty status": (_split(rows.assign(status=None)),
                         ["status", "empty", "expected 'active' or 'in_default'"]),
        "empty body": (b"", ["valid JSON"]),
        "invalid JSON": (b'{"dataframe_split": {"columns": ["status"', ["valid JSON"]),
        "no dataframe key": (json.dumps({"rows": []}).encode(), ["dataframe_split"]),
    }


def test_malformed_requests_get_a_4xx_naming_the_problem(
        served: str, project: Project, rows: pd.DataFrame) -> None:
    feature = next(n for n in project.model.spec.names if n.startswith("dbt_wmean"))
    good = _split(rows.head(3))
    expected = project.model.predict(rows.head(3))
    for case, (body, words) in _malformed(rows.head(3), feature).items():
        status, text = _http("POST", f"{served}/invocations", body)
        message = _error(status, text)
        for word in words:
            assert word in message, (case, word, message[-1500:])
        assert "unexpected error" not in message, (case, message[-1500:])
        # and the server still serves a good request
        _assert_same(_score(served, good), expected)


def test_unsupported_content_type_is_415(served: str, rows: pd.DataFrame) -> None:
    status, text = _http("POST", f"{served}/invocations", _split(rows.head(2)),
                         content_type="text/plain")
    assert status == 415
    assert "application/json" in text and "text/plain" in text


# --------------------------------------------------------------------------- one new buyer


def _one_buyer_folder(raw: Path, buyer: str, out: Path) -> Path:
    """The contract tables of one buyer, as its own raw folder."""
    (out / "invoices").mkdir(parents=True)
    inv = pd.read_parquet(raw / "invoices")
    inv[inv["buyer_id"] == buyer].to_parquet(out / "invoices" / "part-0.parquet", index=False)
    for table in ("buyers", "events"):
        frame = pd.read_parquet(raw / f"{table}.parquet")
        frame[frame["buyer_id"] == buyer].to_parquet(out / f"{table}.parquet", index=False)
    return out


def test_one_new_buyer_from_its_raw_files(served: str, project: Project) -> None:
    """The documented recipe: the buyer's raw files in a folder, `riskmodel features` on it
    with the book's peer context at one of its as-of dates, the Parquet file posted to the
    server. A buyer trading since the data start gets exactly its row of the whole book, and
    the same PD; one that started later differs only in the year-on-year ratios, which its
    own folder cannot see (they are missing)."""
    f = project.features
    latest = f["as_of"].max()
    at = f[(f["as_of"] == latest) & (f["status"] == "active")].set_index("buyer_id")
    first = pd.read_parquet(project.raw / "invoices").groupby("buyer_id")["issue_date"].min()
    start = first.min()
    early = next(b for b in at.index if first[b] == start)
    # a buyer whose first invoice is less than 365 + 90 days before the as-of date
    late = next(b for b in at.index if first[b] > latest - dt.timedelta(days=455))
    yoy = [c for c in f.columns if "_yoy_" in c]
    for buyer in (early, late):
        folder = _one_buyer_folder(project.raw, buyer, project.root / f"new-{buyer}")
        out = project.root / f"new-{buyer}.parquet"
        res = cli("features", folder, "--params", project.params, "--peers",
                  project.root / "features.peers.parquet", "--as-of", str(latest),
                  "--observed-until", str(latest), "--out", out)
        assert res.exit_code == 0, res.output
        assert "wrote 1 rows" in res.stdout
        new = pd.read_parquet(out)
        book_row = f[(f["buyer_id"] == buyer) & (f["as_of"] == latest)].reset_index(drop=True)
        differ = [c for c in f.columns if not new[c].equals(book_row[c])]
        if buyer == early:
            assert differ == []
            pred = _score(served, out.read_bytes(), "application/vnd.apache.parquet")
            _assert_same(pred, project.model.predict(book_row))
        else:
            assert differ and set(differ) <= set(yoy), differ
            assert new[differ].isna().all(axis=None)
            assert book_row[differ].notna().all(axis=None)

    # an as-of date that the peer context does not hold is refused, with the reason
    res = cli("features", project.root / f"new-{early}", "--params", project.params,
              "--peers", project.root / "features.peers.parquet", "--as-of",
              str(latest - dt.timedelta(days=1)), "--observed-until", str(latest),
              "--out", project.root / "refused.parquet")
    assert res.exit_code == 2
    assert "the peer context has no as-of date" in res.output


# --------------------------------------------------------------------------- basic auth

ADMIN = ("admin", "admin-password-1")
OWNER = ("owner", "owner-password-1")
ANALYST = ("analyst", "analyst-password-1")
RELEASER = ("releaser", "releaser-password-1")


@pytest.fixture(scope="module")
def auth_started(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``mlflow server --app-name basic-auth`` on 127.0.0.1 with its own user store,
    started (not yet ready)."""
    root = tmp_path_factory.mktemp("basic_auth")
    (root / "auth.ini").write_text(
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = sqlite:///{root / 'basic_auth.db'}\n"
        f"admin_username = {ADMIN[0]}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        "auth_cache_ttl_seconds = 60\n",
        encoding="utf-8")
    port = _free_port()
    env = _clean_env(MLFLOW_AUTH_CONFIG_PATH=str(root / "auth.ini"),
                     MLFLOW_AUTH_ADMIN_PASSWORD=ADMIN[1],
                     MLFLOW_FLASK_SERVER_SECRET_KEY="test-secret-key")
    args = ["server", "--app-name", "basic-auth", "--host", HOST, "--backend-store-uri",
            f"sqlite:///{root / 'mlflow.db'}", "--artifacts-destination",
            str(root / "artifacts"), "--workers", "1", "--port", str(port)]
    with _server(args, root, env, port) as server:
        yield server


@pytest.fixture(scope="module")
def auth_server(auth_started: Server) -> str:
    auth_started.wait("/health", limit=180)
    return auth_started.url


@contextmanager
def _as(user: tuple[str, str]) -> Iterator[None]:
    """MLflow's clients take the credentials from these two variables."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_USERNAME", user[0])
        mp.setenv("MLFLOW_TRACKING_PASSWORD", user[1])
        yield


def _set_alias(url: str, user: tuple[str, str], version: str) -> tuple[int, str]:
    body = json.dumps({"name": NAME, "alias": "champion", "version": version}).encode()
    return _http("POST", f"{url}/api/2.0/mlflow/registered-models/alias", body, user=user)


def _champion(url: str, user: tuple[str, str]) -> Any:
    status, text = _http(
        "GET", f"{url}/api/2.0/mlflow/registered-models/alias?name={NAME}&alias=champion",
        user=user)
    assert status == 200, text
    return json.loads(text)["model_version"]["version"]


def test_basic_auth_only_granted_users_move_the_champion(auth_server: str) -> None:
    from mlflow.server.auth.client import AuthServiceClient

    url = auth_server
    with _as(ADMIN):
        auth = AuthServiceClient(url)
        for user in (OWNER, ANALYST, RELEASER):
            assert auth.create_user(*user).username == user[0]
    # no credentials, or wrong ones: 401
    search = f"{url}/api/2.0/mlflow/registered-models/search"
    assert _http("GET", search)[0] == 401
    assert _http("GET", search, user=(ANALYST[0], "not-the-password"))[0] == 401

    # the owner registers two versions (as `riskmodel train` does) and, as their creator,
    # may move the alias
    with _as(OWNER):
        client = MlflowClient(url, url)
        client.create_registered_model(NAME)
        run = client.create_run(client.create_experiment(NAME))
        versions = [client.create_model_version(NAME, f"runs:/{run.info.run_id}/model",
                                                run_id=run.info.run_id,
                                                await_creation_for=0).version
                    for _ in range(2)]
    assert versions == ["1", "2"]
    assert _set_alias(url, OWNER, "1")[0] == 200

    # every other user only reads (default_permission READ): 403, the champion stays
    status, text = _set_alias(url, ANALYST, "2")
    assert status == 403 and "Permission denied" in text
    assert _champion(url, ANALYST) == "1"

    # a user granted MANAGE on the registered model moves it; the analyst still cannot
    with _as(ADMIN):
        auth.grant_user_permission(RELEASER[0], "registered_model", NAME, "MANAGE")
    assert _set_alias(url, RELEASER, "2") == (200, "{}")
    assert _champion(url, ANALYST) == "2"
    assert _set_alias(url, ANALYST, "1")[0] == 403
    # EDIT is enough to move an alias
    with _as(ADMIN):
        auth.grant_user_permission(ANALYST[0], "registered_model", NAME, "EDIT")
    assert _set_alias(url, ANALYST, "1")[0] == 200
    assert _champion(url, OWNER) == "1"
