"""build/<config>/manifest.json: per stage its inputs, parameters, outputs (with content hashes), tool versions
and metrics, so that a stage whose inputs did not change can be skipped."""

from __future__ import annotations

import hashlib
import json
import platform
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
            self.data = json.loads(self.path.read_text())

    def _rel(self, path: Path) -> str:
        path = Path(path).resolve()
        try:
            return str(path.relative_to(self.build_dir.resolve()))
        except ValueError:
            return str(path)

    def stage(self, name: str) -> dict[str, Any] | None:
        return self.data["stages"].get(name)

    def is_current(self, name: str, inputs: list[Path], params: dict[str, Any], outputs: list[Path]) -> bool:
        """True when the stage ran before with the same input contents and parameters and its outputs are intact."""
        entry = self.stage(name)
        if entry is None or entry.get("params_sha256") != params_sha256(params):
            return False
        recorded_in = entry.get("inputs", {})
        if set(recorded_in) != {self._rel(p) for p in inputs}:
            return False
        for path in inputs:
            if not Path(path).exists() or recorded_in[self._rel(path)] != tree_sha256(path):
                return False
        recorded_out = entry.get("outputs", {})
        for path in outputs:
            key = self._rel(path)
            if not Path(path).exists() or recorded_out.get(key) != tree_sha256(path):
                return False
        return True

    def record(self, name: str, *, inputs: list[Path], params: dict[str, Any], outputs: list[Path],
               metrics: dict[str, Any] | None = None, tools: list[str] | None = None) -> None:
        self.data["stages"][name] = {
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "inputs": {self._rel(p): tree_sha256(p) for p in inputs},
            "params": params,
            "params_sha256": params_sha256(params),
            "outputs": {self._rel(p): tree_sha256(p) for p in outputs},
            "tool_versions": tool_versions(tools or []),
            "metrics": metrics or {},
        }
        write_json(self.path, self.data)
