#!/usr/bin/env python3
"""Installs the test tools into a directory (the tests use target/chart-tools):

    python3 tests/chart/bootstrap.py target/chart-tools python node moto

- `python`: a venv at DIR/venv with the pinned tests/chart/requirements.txt from PyPI (tests/chart.rs);
- `node`: DIR/node/node_modules from tests/chart/package-lock.json with `npm ci` (tests/chart.rs);
- `moto`: a separate venv at DIR/moto with the pinned tests/aws/requirements.txt, whose
  DIR/moto/bin/moto_server is the STS emulator of the AWS identity tests (tests/harness/src/moto.rs).
  A venv of its own because moto's many dependencies must not move the chart tools' pins.

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
AWS = HERE.parent / "aws"


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


def pip_install(target: Path, requirements: Path) -> str:
    """Creates a venv at `target` with the pinned `requirements`; returns its python."""
    venv.EnvBuilder(with_pip=True, clear=True).create(target)
    python = str(target / "bin" / "python")
    run(
        "pip install from PyPI",
        [
            python, "-m", "pip", "install",
            "--disable-pip-version-check", "--no-input", "-q",
            # Wheels only: helm-python-sdk's sdist would need Go and a C compiler (and moto's
            # cryptography/pydantic-core ones Rust); a missing wheel should say so instead of
            # failing in a compiler.
            "--only-binary=:all:",
            "-r", str(requirements),
        ],
    )
    return python


def build_python(target: Path) -> None:
    python = pip_install(target, HERE / "requirements.txt")
    run(
        "loading the installed tools",
        [python, "-c", "import helm_python, kubernetes_validate, promql_parser; helm_python.helm_sdk_version()"],
    )


def build_moto(target: Path) -> None:
    pip_install(target, AWS / "requirements.txt")
    # The entry point the harness looks for: `--help` imports moto.server (Flask, werkzeug, the
    # backends index) before printing, so a broken install fails here, not in a test.
    run("running moto_server", [str(target / "bin" / "moto_server"), "--help"])


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
        sys.stderr.write("usage: bootstrap.py DIR {python|node|moto}...\n")
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
            elif part == "moto":
                install(tools / "moto", [AWS / "requirements.txt"], build_moto)
            else:
                sys.stderr.write(f"bootstrap: unknown part {part!r}\n")
                return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
