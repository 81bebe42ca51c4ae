"""The k210 board build: every missing piece (RT-Thread tree, scons, toolchain, Kendryte SDK package, embedded
kmodel) is a PipelineError saying what to install; the BSP edits are exact. No RT-Thread tree exists here."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from deploy.firmware import k210_build
from deploy.firmware.k210_build import build_k210, enable_backend
from deploy.firmware.model_spec import model_spec
from deploy.firmware.reference_model import voc20_report
from deploy.firmware.render import RenderOptions, render_firmware
from pipeline.errors import PipelineError
from tests.conftest import shared_path


@pytest.fixture
def rendered(tmp_path) -> Path:
    spec = model_spec(shared_path("kmodels", "voc20_yolov2_v3.kmodel"), voc20_report(), Path("r.json"),
                      score_threshold=0.5, nms_iou=0.3, max_candidates=64)
    return render_firmware(spec, RenderOptions(name="voc20", storage="embedded"), tmp_path / "rendered").folder


def fake_tree(root: Path, *, sdk: bool = True) -> Path:
    bsp = root / "bsp" / "k210"
    (bsp / "applications").mkdir(parents=True)
    (bsp / "SConstruct").write_text("# bsp\n")
    (bsp / "rtconfig.py").write_text("PREFIX = 'riscv-none-embed-'\n")
    (bsp / "rtconfig.h").write_text("#ifndef RT_CONFIG_H__\n#define RT_CONFIG_H__\n#define RT_USING_MSH\n#endif\n")
    if sdk:
        (bsp / "packages" / "kendryte-sdk-v0.5.7").mkdir(parents=True)
    return root


def fake_tool(folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    tool = folder / name
    tool.write_text("#!/bin/sh\nexit 0\n")
    tool.chmod(0o755)
    return folder


def test_missing_tree_names_the_flag_and_the_repository(rendered, tmp_path, monkeypatch):
    monkeypatch.delenv("RTT_ROOT", raising=False)
    with pytest.raises(PipelineError, match="--rtt-root.*RT-Thread/rt-thread"):
        build_k210(rendered, tmp_path / "out")
    with pytest.raises(PipelineError, match="bsp/k210/SConstruct"):
        build_k210(rendered, tmp_path / "out", rtt_root=tmp_path)


def test_missing_scons_toolchain_and_sdk_are_reported(rendered, tmp_path, monkeypatch):
    root = fake_tree(tmp_path / "rtt", sdk=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.delenv("RTT_EXEC_PATH", raising=False)
    with pytest.raises(PipelineError, match="scons"):
        build_k210(rendered, tmp_path / "out", rtt_root=root)
    monkeypatch.setenv("PATH", str(fake_tool(tmp_path / "bin", "scons")))
    with pytest.raises(PipelineError, match="riscv-none-embed-gcc.*RTT_EXEC_PATH"):
        build_k210(rendered, tmp_path / "out", rtt_root=root)
    monkeypatch.setenv("RTT_EXEC_PATH", str(fake_tool(tmp_path / "xpack", "riscv-none-embed-gcc")))
    with pytest.raises(PipelineError, match="pkgs --update"):
        build_k210(rendered, tmp_path / "out", rtt_root=root)


def test_flash_stored_model_is_refused_for_the_board(tmp_path, monkeypatch):
    spec = model_spec(shared_path("kmodels", "voc20_yolov2_v3.kmodel"), voc20_report(), Path("r.json"),
                      score_threshold=0.5, nms_iou=0.3, max_candidates=64)
    folder = render_firmware(spec, RenderOptions(name="voc20", storage="flash"), tmp_path / "flash").folder
    root = fake_tree(tmp_path / "rtt")
    monkeypatch.setenv("PATH", str(fake_tool(tmp_path / "bin", "scons")) + os.pathsep + os.environ["PATH"])
    monkeypatch.setenv("RTT_EXEC_PATH", str(fake_tool(tmp_path / "xpack", "riscv-none-embed-gcc")))
    with pytest.raises(PipelineError, match="kmodel_storage.*embedded"):
        build_k210(folder, tmp_path / "out", rtt_root=root)


def test_scons_runs_in_the_bsp_with_the_rendered_folder_and_backend_enabled(rendered, tmp_path, monkeypatch):
    root = fake_tree(tmp_path / "rtt")
    bsp = root / "bsp" / "k210"
    scons = tmp_path / "bin" / "scons"
    fake_tool(tmp_path / "bin", "scons")
    scons.write_text('#!/bin/sh\necho "$RTT_EXEC_PATH" > exec_path.txt\nprintf BIN > rtthread.bin\n')
    monkeypatch.setenv("PATH", str(tmp_path / "bin") + os.pathsep + os.environ["PATH"])
    monkeypatch.setenv("RTT_EXEC_PATH", str(fake_tool(tmp_path / "xpack", "riscv-none-embed-gcc")))
    image = build_k210(rendered, tmp_path / "out", rtt_root=root)
    assert image.read_bytes() == b"BIN"
    assert (bsp / "exec_path.txt").read_text().strip() == str(tmp_path / "xpack")
    assert (bsp / "applications" / "voc20" / "voc20_kmodel.c").is_file()
    config = (bsp / "rtconfig.h").read_text().splitlines()
    assert config[-2:] == ["#define RT_AI_USE_K210", "#endif"]
    enable_backend(bsp / "rtconfig.h")
    assert (bsp / "rtconfig.h").read_text().count("RT_AI_USE_K210") == 1


def test_failing_scons_reports_its_output(rendered, tmp_path, monkeypatch):
    root = fake_tree(tmp_path / "rtt")
    fake_tool(tmp_path / "bin", "scons").joinpath("scons").write_text("#!/bin/sh\necho 'undefined reference'\nexit 1\n")
    monkeypatch.setenv("PATH", str(tmp_path / "bin") + os.pathsep + os.environ["PATH"])
    monkeypatch.setattr(k210_build, "find_toolchain", lambda: tmp_path)
    with pytest.raises(PipelineError, match="undefined reference"):
        build_k210(rendered, tmp_path / "out", rtt_root=root)
    assert not (tmp_path / "out").exists()
