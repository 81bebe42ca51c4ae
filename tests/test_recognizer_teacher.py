"""The distillation teacher (dlib ResNet encoder), its embedding cache, and the face boxes of our data sets."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from models.recognizer.face_boxes import ATT_FACE_BOX, LFW_FACE_BOX, celeba_boxes
from models.recognizer.teacher import EMBEDDING_SIZE, DlibTeacher, teacher_embeddings
from pipeline.errors import PipelineError
from tests.conftest import shared_path


@pytest.fixture(scope="module")
def teacher() -> DlibTeacher:
    pytest.importorskip("dlib", reason="the teacher needs dlib (pip install dlib-bin)")
    pytest.importorskip("face_recognition_models", reason="the teacher needs pip install face_recognition_models")
    return DlibTeacher()


def lfw_image(name: str, number: int) -> np.ndarray:
    return np.asarray(Image.open(shared_path("lfw", "images", name, f"{name}_{number:04d}.jpg")))


def first_pairs() -> tuple[list[str], list[str]]:
    """The first matched and the first mismatched line of pairs_dev.txt, split on tabs."""
    lines = shared_path("lfw", "pairs_dev.txt").read_text().splitlines()[1:]
    fields = [line.split("\t") for line in lines]
    return next(f for f in fields if len(f) == 3), next(f for f in fields if len(f) == 4)


def test_embedding_of_a_real_lfw_face_is_a_128d_float32_vector_of_norm_about_1_4(teacher):
    image = lfw_image("Abel_Pacheco", 1)
    assert image.ndim == 2  # the shared LFW is grayscale
    embedding = teacher.embed(image, LFW_FACE_BOX)
    assert embedding.shape == (EMBEDDING_SIZE,) and embedding.dtype == np.float32
    assert np.all(np.isfinite(embedding))
    # dlib's descriptors are not normalised: over the 3,811 LFW images the norms were 1.20-1.69, median 1.41
    assert 1.0 < float(np.linalg.norm(embedding)) < 2.0


def test_grayscale_input_embeds_like_its_three_channel_copy(teacher):
    gray = lfw_image("Abel_Pacheco", 1)
    rgb = np.repeat(gray[:, :, None], 3, axis=2)
    expected = teacher.embed(rgb, LFW_FACE_BOX)
    np.testing.assert_array_equal(teacher.embed(gray, LFW_FACE_BOX), expected)
    np.testing.assert_array_equal(teacher.embed(gray[:, :, None], LFW_FACE_BOX), expected)
    with pytest.raises(PipelineError, match="uint8"):
        teacher.embed(gray.astype(np.float32), LFW_FACE_BOX)


def test_same_person_is_closer_than_different_people(teacher):
    matched, mismatched = first_pairs()
    same = [teacher.embed(lfw_image(matched[0], int(n)), LFW_FACE_BOX) for n in matched[1:]]
    different = [teacher.embed(lfw_image(name, int(n)), LFW_FACE_BOX)
                 for name, n in (mismatched[:2], mismatched[2:])]
    same_distance = np.linalg.norm(same[0] - same[1])
    different_distance = np.linalg.norm(different[0] - different[1])
    assert same_distance < 0.6 < different_distance  # 0.6: dlib's documented same-person threshold


def test_batch_gives_the_single_image_embeddings(teacher):
    matched, mismatched = first_pairs()
    images = [lfw_image(matched[0], int(matched[1])), lfw_image(mismatched[0], int(mismatched[1]))]
    boxes = [LFW_FACE_BOX, (60, 70, 190, 200)]
    single = np.array([teacher.embed(image, box) for image, box in zip(images, boxes, strict=True)])
    np.testing.assert_allclose(teacher.embed_batch(images, boxes), single, atol=1e-6)
    assert teacher.embed_batch([], []).shape == (0, EMBEDDING_SIZE)


class CountingTeacher:
    """The real teacher, counting the faces it is asked to embed."""

    def __init__(self, teacher: DlibTeacher) -> None:
        self.teacher, self.identity, self.faces = teacher, teacher.identity, 0

    def embed_batch(self, images, boxes):
        self.faces += len(images)
        return self.teacher.embed_batch(images, boxes)


def noise_images(folder: Path, count: int, seed: int = 0) -> list[Path]:
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        paths.append(folder / f"face{i}.png")
        Image.fromarray(rng.integers(0, 256, (96, 80, 3), dtype=np.uint8)).save(paths[-1])
    return paths


def test_cache_computes_each_image_and_box_once(teacher, tmp_path):
    counting = CountingTeacher(teacher)
    paths = noise_images(tmp_path, 3)
    box = (20, 20, 60, 70)
    items = [(path, box) for path in paths]
    first = teacher_embeddings(items, tmp_path / "cache", progress=False, teacher=counting, batch_size=2)
    assert counting.faces == 3 and first.shape == (3, EMBEDDING_SIZE)
    again = teacher_embeddings(items, tmp_path / "cache", progress=False, teacher=counting)
    assert counting.faces == 3
    np.testing.assert_array_equal(again, first)
    # a new box, or new bytes under an old name, is a new entry; the rest still comes from the cache
    Image.fromarray(np.zeros((96, 80, 3), np.uint8)).save(paths[0])
    changed = teacher_embeddings(items + [(paths[1], (10, 10, 50, 60))], tmp_path / "cache", progress=False,
                                 teacher=counting)
    assert counting.faces == 5
    np.testing.assert_array_equal(changed[1:3], first[1:3])
    assert not np.array_equal(changed[0], first[0])
    assert len(list((tmp_path / "cache").iterdir())) == 1  # one .npz, no temp file left behind


def test_unreadable_image_raises_naming_it_or_is_skipped_and_masked(teacher, tmp_path):
    paths = noise_images(tmp_path, 2)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    items = [(paths[0], (10, 10, 60, 60)), (broken, (10, 10, 60, 60)), (tmp_path / "gone.png", (1, 1, 9, 9)),
             (paths[1], (10, 10, 60, 60))]
    with pytest.raises(PipelineError, match="gone.png"):
        teacher_embeddings(items, tmp_path / "cache", progress=False, teacher=teacher)
    with pytest.raises(PipelineError, match="broken.jpg"):
        teacher_embeddings(items[:2], tmp_path / "cache", progress=False, teacher=teacher)
    embeddings, kept = teacher_embeddings(items, tmp_path / "cache", progress=False, teacher=teacher,
                                          skip_unreadable=True)
    assert kept.tolist() == [True, False, False, True]
    assert embeddings.shape == (2, EMBEDDING_SIZE)
    np.testing.assert_allclose(embeddings[1], teacher.embed(np.asarray(Image.open(paths[1])), (10, 10, 60, 60)),
                               atol=1e-6)


def test_missing_packages_name_the_pip_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "dlib", None)  # makes `import dlib` raise ImportError
    with pytest.raises(PipelineError, match="pip install dlib-bin"):
        DlibTeacher()
    monkeypatch.setitem(sys.modules, "dlib", types.ModuleType("dlib"))
    monkeypatch.setitem(sys.modules, "face_recognition_models", None)
    with pytest.raises(PipelineError, match="pip install face_recognition_models"):
        DlibTeacher()


def test_fixed_boxes_lie_in_their_images():
    assert 0 <= LFW_FACE_BOX[0] < LFW_FACE_BOX[2] <= 250 and 0 <= LFW_FACE_BOX[1] < LFW_FACE_BOX[3] <= 250
    assert 0 <= ATT_FACE_BOX[0] < ATT_FACE_BOX[2] <= 92 and 0 <= ATT_FACE_BOX[1] < ATT_FACE_BOX[3] <= 112


def test_celeba_boxes_of_the_real_set_follow_the_crop():
    root = shared_path("celeba299")
    boxes = celeba_boxes(root)
    assert len(boxes) == 6258
    assert all((root / name).is_file() for name in boxes)
    # boxes.csv row: 000093.jpg,7399,170,55,223,108,396,594,dlib_hog,1,156,42,80 -> scale 128 / 80
    assert boxes["7399/000093.jpg"] == pytest.approx(((170 - 156) * 1.6, (55 - 42) * 1.6, (223 - 156) * 1.6,
                                                      (108 - 42) * 1.6))
    centres = np.array([((x1 + x2) / 2, (y1 + y2) / 2) for x1, y1, x2, y2 in boxes.values()])
    assert np.all(np.abs(np.median(centres, axis=0) - 64) < 4)  # the crops are cut around the face


HEADER = "filename,identity_id,x1,y1,x2,y2,width,height,detector,n_faces,crop_x1,crop_y1,crop_size\n"
GOOD = "000093.jpg,7399,170,55,223,108,396,594,dlib_hog,1,156,42,80\n"


@pytest.mark.parametrize(("text", "where", "field"), [
    (HEADER + GOOD + "000114.jpg,7256,167,11x6,323,271,594,499,dlib_hog,1,128,76,234\n", ":3", "y1"),
    (HEADER + "000114.jpg,7256,167,116,323,271,594\n", ":2", None),
    (HEADER + GOOD + "000114.jpg,7256,167,116,323,271,594,499,dlib_hog,1,128,76,0\n", ":3", "crop_size"),
    (HEADER + GOOD + GOOD, ":3", "filename"),
    (HEADER.replace("crop_size", "side") + GOOD, ":1", None),
])
def test_celeba_bad_rows_name_file_line_and_column(tmp_path, text, where, field):
    (tmp_path / "boxes.csv").write_text(text)
    with pytest.raises(PipelineError) as caught:
        celeba_boxes(tmp_path)
    assert caught.value.path == f"{tmp_path / 'boxes.csv'}{where}"
    assert caught.value.field == field
