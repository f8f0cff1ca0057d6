"""`dvc repro` end to end, stage by stage: wall time and peak RSS of each `riskmodel` command.

Runs the commands of dvc.yaml's stages in order (the same command lines DVC runs) on a fresh
synthetic world of N buyers (2020-01-01 .. 2024-12-31, seed 7) in a scratch folder, each under
``/usr/bin/time -v``, with its own MLflow SQLite store. Prints a markdown table.

    .venv/bin/python bench/bench_pipeline.py --buyers 50000
    .venv/bin/python bench/bench_pipeline.py --buyers 500000
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def run(cmd: str, cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    full = f"/usr/bin/time -v {cmd}"
    res = subprocess.run(full, shell=True, cwd=cwd, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"{cmd} failed:\n{res.stdout[-2000:]}\n{res.stderr[-4000:]}")
    wall = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)", res.stderr)
    assert wall is not None
    h, m, s = wall.groups()
    seconds = (int(h) if h else 0) * 3600 + int(m) * 60 + float(s)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", res.stderr)
    assert rss is not None
    return seconds, int(rss.group(1)) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--buyers", type=int, default=50_000)
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix=f"rm-pipe-{args.buyers}-"))
    for name in ("params.yaml", "dvc.yaml"):
        shutil.copy(ROOT / name, work / name)
    env = {"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(work),
           "MLFLOW_TRACKING_URI": f"sqlite:///{work}/mlflow.db"}
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    commands = [("synth", f"riskmodel synth --out data/raw --buyers {args.buyers} "
                          "--start 2020-01-01 --end 2024-12-31 --seed 7")]
    commands += [(name, " ".join(stage["cmd"].split())) for name, stage in stages.items()]
    rows = []
    try:
        for name, cmd in commands:
            seconds, rss = run(cmd, work, env)
            rows.append((name, seconds, rss))
            print(f"{name}: {seconds:.1f} s, peak RSS {rss:,.0f} MB", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\n| stage ({args.buyers:,} buyers) | wall s | peak RSS MB |\n|---|---|---|")
    for name, seconds, rss in rows:
        print(f"| {name} | {seconds:.1f} | {rss:,.0f} |")
    print(f"| total | {sum(r[1] for r in rows):.1f} | {max(r[2] for r in rows):,.0f} |")


if __name__ == "__main__":
    main()
