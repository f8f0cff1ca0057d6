"""Where a model came from: a fingerprint of the raw inputs and the code's git commit."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path


def fingerprint(path: str | Path) -> str:
    """SHA-256 over the relative names and bytes of every file under ``path`` (or of the file),
    in sorted order: the same data give the same fingerprint on any machine."""
    root = Path(path)
    files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
    h = hashlib.sha256()
    for f in files:
        h.update(str(f.relative_to(root) if root.is_dir() else f.name).encode())
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def git_commit(cwd: str | Path | None = None) -> str:
    """HEAD's commit, with ``-dirty`` when tracked files have uncommitted changes: of the
    working directory's repository, else of the one the package is installed from."""
    for where in (cwd, Path(__file__).resolve().parent):
        found = _commit(where)
        if found != "unknown":
            return found
    return "unknown"


def _commit(cwd: str | Path | None) -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True, timeout=10, cwd=cwd).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, cwd=cwd).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("-dirty" if dirty.strip() else "")
