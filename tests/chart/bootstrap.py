#!/usr/bin/env python3
"""Installs the chart and Dockerfile test tools into a directory (tests/chart.rs uses
target/chart-tools):

    python3 tests/chart/bootstrap.py target/chart-tools python node

- `python`: a venv at DIR/venv with the pinned tests/chart/requirements.txt from PyPI;
- `node`: DIR/node/node_modules from tests/chart/package-lock.json with `npm ci`.

Each part is reinstalled only when its pins (or the Python version) change; a stamp file written
last marks a finished install, so an interrupted one is redone. Parallel test processes serialise
on an flock of DIR/.lock, which the kernel releases even if a holder is killed. Quiet on success;
on failure prints what failed and exits 1, so the tests fail instead of being skipped.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

HERE = Path(__file__).resolve().parent


def fingerprint(*files: Path) -> str:
    digest = hashlib.sha256(sys.version.encode())
    for f in files:
        digest.update(f.read_bytes())
    return digest.hexdigest()


def run(what: str, cmd: list[str], cwd: Path | None = None) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        sys.stderr.write(
            f"bootstrap: {what} failed (exit {proc.returncode}): {' '.join(cmd)}\n"
            f"{proc.stdout[-4000:]}{proc.stderr[-4000:]}\n"
        )
        sys.exit(1)


def install(part_dir: Path, pins: list[Path], build) -> None:
    stamp = part_dir / ".installed"
    wanted = fingerprint(*pins)
    if stamp.is_file() and stamp.read_text() == wanted:
        return
    shutil.rmtree(part_dir, ignore_errors=True)
    part_dir.mkdir(parents=True)
    build(part_dir)
    stamp.write_text(wanted)


def build_python(target: Path) -> None:
    venv.EnvBuilder(with_pip=True, clear=True).create(target)
    python = str(target / "bin" / "python")
    run(
        "pip install from PyPI",
        [
            python, "-m", "pip", "install",
            "--disable-pip-version-check", "--no-input", "-q",
            # Wheels only: helm-python-sdk's sdist would need Go and a C compiler; a missing wheel
            # should say so instead of failing in a compiler.
            "--only-binary=:all:",
            "-r", str(HERE / "requirements.txt"),
        ],
    )
    run(
        "loading the installed tools",
        [python, "-c", "import helm_python, kubernetes_validate, promql_parser; helm_python.helm_sdk_version()"],
    )


def build_node(target: Path) -> None:
    npm = shutil.which("npm")
    if npm is None:
        sys.stderr.write("bootstrap: npm not found on PATH (Node.js and npm are needed for the Dockerfile lint)\n")
        sys.exit(1)
    for name in ("package.json", "package-lock.json"):
        shutil.copy(HERE / name, target / name)
    run(
        "npm ci from the npm registry",
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error", "--ignore-scripts"],
        cwd=target,
    )
    run("running dockerfile-utils", [str(target / "node_modules" / ".bin" / "dockerfile-utils"), "--version"])


def main() -> int:
    if len(sys.argv) < 3:
        sys.stderr.write("usage: bootstrap.py DIR {python|node}...\n")
        return 2
    tools = Path(sys.argv[1]).resolve()
    tools.mkdir(parents=True, exist_ok=True)
    with open(tools / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for part in sys.argv[2:]:
            if part == "python":
                install(tools / "venv", [HERE / "requirements.txt"], build_python)
            elif part == "node":
                install(tools / "node", [HERE / "package.json", HERE / "package-lock.json"], build_node)
            else:
                sys.stderr.write(f"bootstrap: unknown part {part!r}\n")
                return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
