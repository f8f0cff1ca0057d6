"""One scoring run: plan, the whole-book step between the passes, and an atomic publish.

The run works in a staging folder beside ``--out`` (``.<name>.scoring-<pid>-<token>``);
only when every bucket is scored is its ``data/`` folder renamed to ``--out`` (an earlier
scoring output there is replaced), so a run killed half way leaves no partial output, and
the next run removes the staging folders of runs that are no longer alive.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from riskmodel.scoring.unit import ScoreJob, typical_values_of, whole_book_context

if TYPE_CHECKING:
    from riskmodel.modeling.model import RiskModel

#: the file that marks a folder as a scoring output (ignored by Parquet dataset readers)
MANIFEST = "_scoring.json"
#: the scored buyers' features in the bins of the model's training profile
PROFILE = "_profile.parquet"
#: the whole-book context of the run (peer medians, cycle values) and the portfolio medians
#: of the reasons: what a later run of a few buyers reuses (``--reference``)
CONTEXT = "_context.parquet"
TYPICAL = "_typical.json"
KIND = "riskmodel-scores"
Progress = Callable[[str, int, int], None]


class ScoringError(ValueError):
    """A scoring run cannot start or finish as asked; the message says what to change."""


@dataclass
class Between:
    """What the second pass needs from the whole book."""

    context: pa.Table
    typical: pd.Series
    warnings: list[str] = field(default_factory=list)


@dataclass
class ScoreResult:
    out: Path
    as_of: dt.date
    engine: str
    buyers: int
    counts: pd.DataFrame  # status, grade, buyers
    seconds: dict[str, float]
    lineage: dict[str, str]
    warnings: list[str]

    @property
    def wall(self) -> float:
        return sum(self.seconds.values())

    @property
    def per_second(self) -> float:
        return self.buyers / self.wall if self.wall > 0 else float("nan")


def check_out(out: Path) -> None:
    """``--out`` may be missing, an empty folder or an earlier scoring output."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise ScoringError(f"{out} exists and is not a folder: give a folder for the scores")
    if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST).is_file():
        raise ScoringError(f"{out} is a folder that is not a scoring output (no {MANIFEST}): "
                           "refusing to replace it; give another --out or empty it yourself")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale(out: Path) -> list[Path]:
    """Remove the staging folders of earlier runs into ``out`` whose process is gone."""
    gone = []
    for old in out.parent.glob(f".{out.name}.scoring-*"):
        try:
            pid = int(old.name.rsplit(".scoring-", 1)[1].split("-")[0])
        except (IndexError, ValueError):
            continue
        if pid != os.getpid() and not _alive(pid):
            shutil.rmtree(old, ignore_errors=True)
            gone.append(old)
    return gone


def staging_for(out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    path = out.parent / f".{out.name}.scoring-{os.getpid()}-{secrets.token_hex(4)}"
    path.mkdir()
    return path


#: fewer live buyers than this in the sample: no domain check (a PSI of a few rows is noise)
MIN_DOMAIN_ROWS = 500


def between(job: ScoreJob, buckets: list[int], model: RiskModel, sample_buyers: int,
            fixed: Between | None = None) -> Between:
    """The whole-book step: the peer and cycle context, the portfolio medians of the reason
    sentences (and the domain check) over the first ``sample_buyers`` buyers; or ``fixed``,
    those of a reference run, as they are."""
    from riskmodel.modeling.domain import check

    if fixed is not None:
        return fixed
    context = whole_book_context(job, buckets)
    names = list(model.spec.names)
    typical, sample = typical_values_of(job, buckets, context, names, sample_buyers)
    warnings: list[str] = []
    live_rows = int((sample["status"].astype("str") != "in_default").sum()) if len(sample) else 0
    if model.profile is not None and live_rows >= MIN_DOMAIN_ROWS:
        from riskmodel.pipeline import domain_features

        live = sample[sample["status"].astype("str") != "in_default"]
        found = check(model.profile, live, features=domain_features(names))
        warnings = [w.message for w in found]
    elif model.profile is not None and live_rows:
        warnings = [f"only {live_rows} live buyers: their features are not compared with the "
                    "model's training distribution"]
    return Between(context, typical, warnings)


def read_reference(path: str | Path) -> tuple[dict[str, Any], Between]:
    """The manifest, context and portfolio medians of an earlier scoring output."""
    path = Path(path)
    if not (path / MANIFEST).is_file():
        raise ScoringError(f"--reference {path}: not a scoring output (no {MANIFEST})")
    if not (path / CONTEXT).is_file() or not (path / TYPICAL).is_file():
        raise ScoringError(f"--reference {path}: holds no {CONTEXT} and {TYPICAL} (written "
                           "by an older version: score the book again)")
    try:
        manifest = read_manifest(path)
        context = pq.read_table(path / CONTEXT)
        typical = pd.Series(json.loads((path / TYPICAL).read_text(encoding="utf-8")),
                            dtype="float64")
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise ScoringError(f"--reference {path}: cannot read it: {exc}") from exc
    return manifest, Between(context, typical)


def publish(job: ScoreJob, staging: Path, out: Path, counts: pd.DataFrame,
            extra: dict[str, Any], mid: Between) -> None:
    """Write the manifest, context and medians into the finished output and move it to
    ``out`` (replacing an earlier scoring output)."""
    data = staging / "data"
    data.mkdir(parents=True, exist_ok=True)
    pq.write_table(mid.context, data / CONTEXT)
    typical = {k: (None if pd.isna(v) else float(v)) for k, v in mid.typical.items()}
    (data / TYPICAL).write_text(json.dumps(typical, indent=1) + "\n", encoding="utf-8")
    profile_parts = sorted((staging / "profile").glob("part-*.parquet"))
    if profile_parts:
        binned = pa.concat_tables([pq.read_table(p) for p in profile_parts]).to_pandas()
        binned = (binned.groupby(["feature", "bin"], as_index=False)["rows"].sum()
                  .sort_values(["feature", "bin"], kind="stable").reset_index(drop=True))
        pq.write_table(pa.Table.from_pandas(binned, preserve_index=False), data / PROFILE)
    manifest = {
        "kind": KIND, "as_of": job.as_of.isoformat(), **job.lineage,
        "buyers": int(counts["buyers"].sum()) if len(counts) else 0,
        "by_status": {str(k): int(v) for k, v in
                      counts.groupby("status")["buyers"].sum().sort_index().items()},
        "by_grade": {str(k): int(v) for k, v in
                     counts.dropna(subset=["grade"]).groupby("grade")["buyers"].sum().items()},
        "reasons": job.top, **extra,
        "parts": sorted(p.name for p in data.glob("part-*.parquet")),
    }
    (data / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    check_out(out)
    if out.exists():
        old = staging / "replaced"
        os.replace(out, old)
    os.replace(data, out)


def read_manifest(out: str | Path) -> dict[str, Any]:
    path = Path(out) / MANIFEST
    return json.loads(path.read_text(encoding="utf-8"))


def timed(seconds: dict[str, float], name: str) -> Callable[[], None]:
    t0 = time.perf_counter()

    def done() -> None:
        seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - t0
    return done
