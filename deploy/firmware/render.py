"""Render the RT-Thread glue of one compiled model from the Jinja templates in firmware/templates, plus copies of
the C sources it needs (rt_ai core and backends, the applications of firmware/app, software-KPU runtime), into one
folder. A detector gets the msh command `<name>_detect`, an embedder (face recognizer) `<name>_embed`; the rendered
`<name>_app.c` only wires the model's generated headers into firmware/app/detect_app.c or embed_app.c.

The folder holds `face_ai/`, an RT-Thread component for a BSP's root: the shared runtime with its SConscript and
Kconfig, and the model in `face_ai/<name>/`. Models rendered apart share the runtime part byte for byte, so a BSP
holds one `face_ai/` with a sub-folder per model."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import jinja2

from deploy.firmware.c_names import c_float, c_json_string, model_identifier, unique_identifiers
from deploy.firmware.k210_headers import write_k210_headers
from deploy.firmware.model_spec import ModelSpec
from deploy.k210.format.kmodel_io import MODEL_ALIGNMENT
from pipeline.atomic import atomic_folder
from pipeline.errors import PipelineError

FIRMWARE_DIR = Path(__file__).resolve().parents[2] / "firmware"
TEMPLATE_DIR = FIRMWARE_DIR / "templates"
COMPONENT = "face_ai"  # the folder a BSP gets
COPIED_SOURCE_DIRS = ("rt_ai", "app", "runtime")
KMODEL_ALIGNMENT = MODEL_ALIGNMENT
HEX_BYTES_PER_LINE = 12
STORAGES = ("embedded", "flash")
# model kind -> (its parameter header template, its application template, the msh command's suffix)
KIND_FILES = {"detector": ("detector.h.j2", "app.c.j2", "detect"), "embedder": ("embedder.h.j2", "embed_app.c.j2",
                                                                               "embed")}


@dataclass(frozen=True)
class RenderOptions:
    """How to render: the model's name and where its kmodel lives on the board."""

    name: str
    storage: str = "flash"
    flash_offset: int = 0x300000


@dataclass(frozen=True)
class RenderedFirmware:
    folder: Path
    c_name: str
    files: tuple[str, ...]
    command: str  # the msh command of its application


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATE_DIR), undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, autoescape=False)
    env.filters["c_float"] = c_float
    env.filters["c_json_string"] = c_json_string
    return env


def _check_options(options: RenderOptions) -> None:
    if options.storage not in STORAGES:
        raise PipelineError(f"got {options.storage!r}", field="firmware.kmodel_storage", expected=" or ".join(STORAGES))
    if options.flash_offset < 0 or options.flash_offset % KMODEL_ALIGNMENT:
        raise PipelineError(f"got {options.flash_offset:#x}", field="deploy.kmodel_address",
                            expected=f"a non-negative multiple of {KMODEL_ALIGNMENT}")


def _comment_safe(text: str) -> str:
    """Text that can sit inside a C block comment and a Python/Kconfig line comment."""
    printable = "".join(ch if ch.isprintable() and ord(ch) < 128 else "?" for ch in text)
    return printable.replace("*/", "* /")


def _hex_lines(data: bytes) -> list[str]:
    return [", ".join(f"0x{b:02x}" for b in data[i:i + HEX_BYTES_PER_LINE]) + ","
            for i in range(0, len(data), HEX_BYTES_PER_LINE)]


def _detector_context(spec: ModelSpec, c_name: str) -> dict:
    det = spec.detector
    return {
        "input_w": det.input_w, "input_h": det.input_h, "grid_w": det.grid_w, "grid_h": det.grid_h,
        "anchors": det.anchors, "classes": det.classes, "score_threshold": det.score_threshold,
        "nms_iou": det.nms_iou, "max_candidates": det.max_candidates, "letterbox_fill": det.letterbox_fill,
        "class_identifiers": unique_identifiers(list(det.classes), prefix=f"{c_name.upper()}_CLASS",
                                                field="detector.classes"),
    }


def _context(spec: ModelSpec, options: RenderOptions, c_name: str) -> dict:
    return {
        "source_comment": _comment_safe(spec.kmodel.name),
        "c_name": c_name, "C_NAME": c_name.upper(), "kmodel_size": spec.kmodel_size,
        "work_buffer_bytes": spec.work_buffer_bytes, "alignment": KMODEL_ALIGNMENT, "storage": options.storage,
        "flash_offset": options.flash_offset, "inputs": spec.inputs, "outputs": spec.outputs,
        "kind": spec.kind, "command": app_command(c_name, spec.kind),
        "detector": _detector_context(spec, c_name) if spec.detector is not None else None,
        "embedder": spec.embedder,
    }


def app_command(c_name: str, kind: str) -> str:
    """The msh command of a model of this kind."""
    return f"{c_name}_{KIND_FILES[kind][2]}"


def rendered_kind(model_dir: Path) -> str:
    """The kind of the model in a rendered face_ai/<name>/ folder, told by its parameter header."""
    kinds = [kind for kind in KIND_FILES if (Path(model_dir) / f"{Path(model_dir).name}_{kind}.h").is_file()]
    if len(kinds) != 1:
        raise PipelineError("not a rendered model folder", path=model_dir,
                            expected=f"one of {', '.join(f'<name>_{k}.h' for k in KIND_FILES)} (run `invoke render`)")
    return kinds[0]


def _outputs(c_name: str, kind: str, storage: str) -> dict[str, str]:
    """Template -> file in the rendered folder: the model's files in face_ai/<name>/, the shared ones in face_ai/."""
    header, app, _ = KIND_FILES[kind]
    model = {
        "rt_ai_model.h.j2": f"rt_ai_{c_name}_model.h",
        "rt_ai_model.c.j2": f"rt_ai_{c_name}_model.c",
        header: f"{c_name}_{kind}.h",
        app: f"{c_name}_app.c",
        "board_k210.c.j2": f"{c_name}_board_k210.c",
        "SConscript.j2": "SConscript",
    }
    if storage == "embedded":
        model["kmodel.h.j2"] = f"{c_name}_kmodel.h"
        model["kmodel.c.j2"] = f"{c_name}_kmodel.c"
    files = {template: f"{COMPONENT}/{c_name}/{name}" for template, name in model.items()}
    files.update({"face_ai_SConscript.j2": f"{COMPONENT}/SConscript", "face_ai_Kconfig.j2": f"{COMPONENT}/Kconfig"})
    return files


def model_folder(rendered: Path, c_name: str) -> Path:
    """Where the model's own files are in a rendered folder."""
    return Path(rendered) / COMPONENT / c_name


def render_firmware(spec: ModelSpec, options: RenderOptions, folder: Path) -> RenderedFirmware:
    """Write the rendered folder; it appears complete or not at all (rendered beside it, then renamed)."""
    _check_options(options)
    c_name = model_identifier(options.name)
    context = _context(spec, options, c_name)
    if options.storage == "embedded":
        context["kmodel_hex_lines"] = _hex_lines(spec.kmodel.read_bytes())
    env = _environment()
    folder = Path(folder)
    with atomic_folder(folder) as tmp:
        names = []
        (tmp / COMPONENT / c_name).mkdir(parents=True)
        for template, name in _outputs(c_name, spec.kind, options.storage).items():
            (tmp / name).write_text(env.get_template(template).render(context), encoding="utf-8")
            names.append(name)
        for sub in COPIED_SOURCE_DIRS:
            shutil.copytree(FIRMWARE_DIR / sub, tmp / COMPONENT / sub)
            names += [f"{COMPONENT}/{sub}/{p.name}" for p in sorted((tmp / COMPONENT / sub).iterdir())]
        # the C runtime's K210 facts and kmodel layout, generated from the Python side, beside the runtime
        names += [f"{COMPONENT}/runtime/{p.name}" for p in write_k210_headers(tmp / COMPONENT / "runtime")]
    return RenderedFirmware(folder=folder, c_name=c_name, files=tuple(sorted(names)),
                            command=app_command(c_name, spec.kind))
