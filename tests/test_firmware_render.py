"""Rendering: names become safe C, values reach C escaped, parameters come from the report (not the templates)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from deploy.firmware.build import build_host
from deploy.firmware.c_names import c_float, c_identifier, c_json_string, c_string, model_identifier, unique_identifiers
from deploy.firmware.camera_frames import write_ppm_frames
from deploy.firmware.model_spec import model_spec
from deploy.firmware.reference_model import VOC20_CLASSES, voc20_report
from deploy.firmware.render import RenderOptions, model_folder, render_firmware
from deploy.firmware.run import run_host
from pipeline.errors import PipelineError
from tests.conftest import shared_path

ODD_LABELS = ['say "hi"', "back\\slash", "Ünïcødé", "tri??gra?ph", "new\nline"] + list(VOC20_CLASSES[5:])


def spec_for(report: dict, **kwargs):
    args = {"score_threshold": 0.5, "nms_iou": 0.3, "max_candidates": 256, **kwargs}
    return model_spec(shared_path("kmodels", "voc20_yolov2_v3.kmodel"), report, Path("report.json"), **args)


@pytest.mark.parametrize(("name", "ident"), [("face", "face"), ("Face-Detect v2", "face_detect_v2"),
                                             ("2faces", "_2faces"), ("  mask.net ", "mask_net")])
def test_model_names_become_c_identifiers(name, ident):
    assert model_identifier(name) == ident


@pytest.mark.parametrize(("name", "why"), [("int", "C keyword"), ("!!!", "no letter or digit"),
                                           ("a_very_long_model_name", "at most 15")])
def test_unsafe_names_are_refused(name, why):
    with pytest.raises(PipelineError, match=why):
        model_identifier(name)


def test_class_identifiers_are_unique_and_valid():
    idents = unique_identifiers(["with-mask", "with mask", "with_mask", "9lives"], prefix="M_CLASS", field="classes")
    assert idents == ["M_CLASS_WITH_MASK", "M_CLASS_WITH_MASK_2", "M_CLASS_WITH_MASK_3", "M_CLASS__9LIVES"]
    assert all(c_identifier(i) == i for i in idents)


def test_c_literals_round_trip_through_gcc(tmp_path):
    texts = ODD_LABELS[:5] + ["tab\there", "*/ end comment"]
    source = "#include <stdio.h>\nint main(void) {\n"
    source += "".join(f'    puts({c_string(t.replace(chr(10), " "))});\n' for t in texts)
    source += "".join(f"    printf(\"%.9g\\n\", (double){c_float(v)});\n" for v in (0.1, 1e-7, 16.62, 3))
    source += f'    printf("\\"%s\\"\\n", {c_json_string(ODD_LABELS[0])});\n    return 0;\n}}\n'
    (tmp_path / "t.c").write_text(source)
    subprocess.run(["gcc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-Wtrigraphs", "t.c", "-o", "t"], cwd=tmp_path,
                   check=True)
    lines = subprocess.run([str(tmp_path / "t")], capture_output=True, check=True).stdout.decode().splitlines()
    assert lines[:7] == [t.replace("\n", " ") for t in texts]
    assert [float(v) for v in lines[7:11]] == pytest.approx([0.1, 1e-7, 16.62, 3.0], rel=1e-7)
    assert json.loads(lines[11]) == ODD_LABELS[0]
    with pytest.raises(PipelineError, match="finite"):
        c_float(float("nan"))


def test_header_sizes_follow_the_kmodel_and_dtype(tmp_path):
    rendered = render_firmware(spec_for(voc20_report()), RenderOptions(name="voc20"), tmp_path / "r").folder
    folder = model_folder(rendered, "voc20")
    header = (folder / "rt_ai_voc20_model.h").read_text()
    assert "#define RT_AI_VOC20_IN_1_SIZE_BYTES 230400u" in header  # uint8 input: not x4
    assert "#define RT_AI_VOC20_OUT_1_SIZE_BYTES 35000u" in header  # float32 output
    assert "#define RT_AI_VOC20_KMODEL_FLASH_OFFSET 0x300000u" in header
    assert "RT_AI_USE_K210" in (folder.parent / "Kconfig").read_text()
    assert "voc20_ai" in (folder / "SConscript").read_text() and "face_ai" in (folder.parent / "SConscript").read_text()
    assert not (folder / "voc20_kmodel.c").exists()


def test_report_values_reach_the_firmware(tmp_path):
    report = voc20_report()
    report["detector"].update(classes=ODD_LABELS, score_threshold=0.9, nms_iou=0.45)
    report["detector"]["anchors"][1] = [3.5, 4.25]
    spec = spec_for(report)
    rendered = render_firmware(spec, RenderOptions(name="odd"), tmp_path / "r").folder
    detector = (model_folder(rendered, "odd") / "odd_detector.h").read_text()
    assert "#define ODD_SCORE_THRESHOLD 0.9f" in detector and "#define ODD_NMS_IOU 0.45f" in detector
    assert "1.08f, 1.19f, 3.5f, 4.25f" in detector and "ODD_CLASS_SAY__HI_ = 0" in detector
    build = build_host(rendered, tmp_path / "b")
    frames = write_ppm_frames([shared_path("kmodels", "dog.bmp")], tmp_path / "f")
    result = run_host(build.program, frames, flash_files={0x300000: spec.kmodel})
    detections = result.frames[0].detections
    assert [(d["label"], d["class"]) for d in detections] == [(ODD_LABELS[1], 1)]  # only the bicycle beats 0.9
    assert detections[0]["score"] > 0.9


@pytest.mark.parametrize(("change", "field"), [
    (lambda r: r.pop("detector"), "detector"),
    (lambda r: r["detector"].update(input_size=[320, 256]), "detector.input_size"),
    (lambda r: r["detector"].update(grid=[10, 8]), "outputs[0].size"),
    (lambda r: r["detector"].update(num_anchors=4), "detector.num_anchors"),
    (lambda r: r["detector"].update(anchors=[[1, -2]] * 5), "detector.anchors[0]"),
    (lambda r: r["detector"].update(classes=[]), "detector.classes"),
    (lambda r: r["detector"].update(score_threshold=1.5), "detector.score_threshold"),
])
def test_bad_reports_are_refused_naming_the_field(change, field):
    report = voc20_report()
    change(report)
    with pytest.raises(PipelineError, match=f"field '{field.replace('[', '.').replace(']', '.')}"):
        spec_for(report)


def test_failed_render_leaves_the_previous_folder(tmp_path):
    target = tmp_path / "r"
    render_firmware(spec_for(voc20_report()), RenderOptions(name="voc20"), target)
    before = sorted(p.name for p in target.iterdir())
    with pytest.raises(PipelineError, match="deploy.kmodel_address"):
        render_firmware(spec_for(voc20_report()), RenderOptions(name="voc20", flash_offset=0x300001), target)
    with pytest.raises(PipelineError, match="C keyword"):
        render_firmware(spec_for(voc20_report()), RenderOptions(name="while"), target)
    assert sorted(p.name for p in target.iterdir()) == before
    assert [p.name for p in tmp_path.iterdir()] == ["r"]
