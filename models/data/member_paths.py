"""The one path policy for files a data set names (a VOC `<filename>`, a WIDER image path, a YOLO label): the name
is relative and stays inside its root folder, unless `dataset.paths_outside_root` allows otherwise."""

from __future__ import annotations

from pathlib import Path, PurePosixPath, PureWindowsPath

from pipeline.errors import PipelineError


def member_path(root: Path, name: str, *, where: Path, field: str, allow_outside: bool = False) -> Path:
    """`root / name`; PipelineError (naming the annotation file and field) when `name` is absolute or climbs out
    of `root` with `..` and that is not allowed."""
    posix = PurePosixPath(name.replace("\\", "/"))
    escapes = posix.is_absolute() or PureWindowsPath(name).drive != "" or ".." in posix.parts
    if escapes and not allow_outside:
        raise PipelineError(f"path {name!r} leaves the data set folder {root}", path=where, field=field,
                            expected="a path relative to that folder, without '..' (or dataset.paths_outside_root: "
                                     "true)")
    return Path(root) / name if allow_outside else Path(root) / Path(*posix.parts)
