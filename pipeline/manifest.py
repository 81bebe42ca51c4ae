"""build/<config>/manifest.json: per stage its inputs, parameters, outputs (with content hashes), tool versions
and metrics, so that a stage whose inputs did not change can be skipped."""

from __future__ import annotations

import hashlib
import json
import platform
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from pipeline.atomic import write_json

MANIFEST_NAME = "manifest.json"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def tree_sha256(path: Path) -> str:
    """Hash of a file, or of every file below a folder (names and contents)."""
    path = Path(path)
    if path.is_file():
        return file_sha256(path)
    digest = hashlib.sha256()
    for child in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(child.relative_to(path)).encode())
        digest.update(file_sha256(child).encode())
    return digest.hexdigest()


def params_sha256(params: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()


def tool_versions(packages: list[str]) -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


class Manifest:
    """The manifest of one build folder."""

    def __init__(self, build_dir: Path) -> None:
        self.build_dir = Path(build_dir)
        self.path = self.build_dir / MANIFEST_NAME
        self.data: dict[str, Any] = {"stages": {}}
        if self.path.is_file():
            self.data = self._read()

    def _read(self) -> dict[str, Any]:
        """The recorded stages; a damaged manifest (truncated, not JSON) counts as absent, with a warning: every
        stage then runs again and the next record rewrites it."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            reason = str(exc)
        else:
            if isinstance(data, dict) and isinstance(data.get("stages"), dict) and all(
                    isinstance(entry, dict) for entry in data["stages"].values()):
                return data
            reason = "not an object with a 'stages' mapping"
        print(f"warning: {self.path}: damaged manifest ({reason}); treating it as absent, every stage runs again",
              file=sys.stderr)
        return {"stages": {}}

    def _rel(self, path: Path) -> str:
        path = Path(path).resolve()
        try:
            return str(path.relative_to(self.build_dir.resolve()))
        except ValueError:
            return str(path)

    def stage(self, name: str) -> dict[str, Any] | None:
        return self.data["stages"].get(name)

    def input_hashes(self, inputs: list[Path]) -> dict[str, str | None]:
        """Content hash of every input as it is now (None for a missing one), keyed as the manifest records them."""
        return {self._rel(p): tree_sha256(p) if Path(p).exists() else None for p in inputs}

    def is_current(self, name: str, inputs: list[Path], params: dict[str, Any], outputs: list[Path],
                   input_hashes: dict[str, str | None] | None = None) -> bool:
        """True when the stage ran before with the same input contents and parameters and its outputs are intact."""
        entry = self.stage(name)
        if entry is None or entry.get("params_sha256") != params_sha256(params):
            return False
        hashes = self.input_hashes(inputs) if input_hashes is None else input_hashes
        if None in hashes.values() or entry.get("inputs", {}) != hashes:
            return False
        recorded_out = entry.get("outputs", {})
        for path in outputs:
            key = self._rel(path)
            if not Path(path).exists() or recorded_out.get(key) != tree_sha256(path):
                return False
        return True

    def record(self, name: str, *, inputs: list[Path], params: dict[str, Any], outputs: list[Path],
               metrics: dict[str, Any] | None = None, tools: list[str] | None = None,
               input_hashes: dict[str, str | None] | None = None) -> None:
        """Record a finished stage; `input_hashes` are the inputs as they were when the work started (the ones it
        used), hashed now when not given."""
        self.data["stages"][name] = {
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "inputs": self.input_hashes(inputs) if input_hashes is None else input_hashes,
            "params": params,
            "params_sha256": params_sha256(params),
            "outputs": {self._rel(p): tree_sha256(p) for p in outputs},
            "tool_versions": tool_versions(tools or []),
            "metrics": metrics or {},
        }
        write_json(self.path, self.data)
