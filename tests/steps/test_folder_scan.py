"""The image folder is untrusted input: one scan, decoding as training does, one line naming every problem."""
from __future__ import annotations

import builtins
import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from steps.config import DataConfig
from steps.input_cache import CacheConfig
from tests.images import make_image_folder


@pytest.fixture(autouse=True)
def _own_fingerprint_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


def _cfg(root: Path) -> DataConfig:
    return DataConfig(dataset=str(root), image_size=16, min_test_images=1)


def _inspect(root: Path):
    from steps import data

    return data.inspect(_cfg(root))


def _refusal(root: Path) -> str:
    from steps import data

    with pytest.raises(data.DataError) as caught:
        data.inspect(_cfg(root))
    message = str(caught.value)
    assert "\n" not in message, "one line"
    return message


def _solid(folder: Path, n: int, colour: tuple[int, int, int], mode: str, suffix: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        image = Image.fromarray(np.full((12, 12, 3), colour, np.uint8))
        (image.convert(mode) if mode != "RGB" else image).save(folder / f"{i:02d}{suffix}")


def _train_pixels(root: Path) -> tuple[np.ndarray, np.ndarray]:
    from steps import data

    splits = data.load(_cfg(root), cache=CacheConfig(mode="off"))
    return data.to_arrays(splits.train)


def test_a_palette_bmp_trains_in_its_colours_not_its_palette_indices(tmp_path):
    root = tmp_path / "images"
    _solid(root / "red", 5, (220, 10, 10), "P", ".bmp")
    _solid(root / "blue", 5, (10, 10, 220), "P", ".bmp")
    images, labels = _train_pixels(root)
    info = _inspect(root)
    red = images[labels == info.labels.index("red")].reshape(-1, 3).mean(axis=0)
    assert red[0] > 180 and red[1] < 40 and red[2] < 40, f"mean colour {red}"


def test_a_one_bit_bmp_is_converted_not_a_crash_minutes_later(tmp_path):
    root = tmp_path / "images"
    for name, value in (("black", 0), ("white", 255)):
        _solid(root / name, 5, (value, value, value), "1", ".bmp")
    images, labels = _train_pixels(root)
    white = _inspect(root).labels.index("white")
    assert images[labels == white].min() == 255 and images[labels != white].max() == 0


def test_webp_tiff_and_nested_folders_are_used_and_counted(tmp_path):
    root = tmp_path / "images"
    _solid(root / "red", 5, (220, 10, 10), "RGB", ".webp")
    _solid(root / "blue" / "2019", 3, (10, 10, 220), "RGB", ".tif")
    _solid(root / "blue" / "2020", 2, (10, 10, 220), "RGB", ".png")
    info = _inspect(root)
    assert info.labels == ("blue", "red")
    assert info.scan.summary().startswith(f"image folder {root}: 10 images used in 2 classes (train 6, val 2, test 2)")


def test_what_is_skipped_is_counted_by_reason(tmp_path):
    root = make_image_folder(tmp_path / "images", per_class=10)
    (root / "blobs" / "notes.txt").write_text("x")
    (root / "blobs" / "IMG_1.heic").write_bytes(b"x")
    (root / "checks" / ".DS_Store").write_bytes(b"x")
    (root / ".thumbnails").mkdir()
    (root / "stray.jpg").write_bytes(b"x")
    (root / "checks" / "sub.png").mkdir()  # a folder named like an image: a nested (empty) folder
    scan = _inspect(root).scan
    summary = scan.summary()
    assert "30 images used in 3 classes" in summary
    for part in ("5 skipped", "1 format not supported (1 .heic)", "1 not an image (1 .txt)",
                 "2 hidden (.thumbnails, checks/.DS_Store)", "1 outside a class folder (stray.jpg)"):
        assert part in summary, summary
    assert any(".heic" in w and "convert them" in w for w in scan.warnings)
    assert "| checks/.DS_Store | hidden |" in scan.table()


def test_every_bad_file_is_named_in_one_line(tmp_path):
    root = make_image_folder(tmp_path / "images", per_class=10)
    for i in range(4):
        (root / "checks" / f"broken{i}.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    os.symlink(tmp_path / "nowhere.jpg", root / "blobs" / "photo.jpg")
    os.mkfifo(root / "blobs" / "pipe.png")  # read, it would block: the scan must not open it
    message = _refusal(root)
    assert "6 image file(s) cannot be used" in message
    assert "4 unreadable (checks/broken0.jpg, checks/broken1.jpg, checks/broken2.jpg, checks/broken3.jpg)" in message
    assert "2 not a file (blobs/photo.jpg, blobs/pipe.png)" in message
    assert message.endswith("remove or replace them")


def test_a_broken_link_is_one_line_naming_it(tmp_path):
    root = make_image_folder(tmp_path / "images", per_class=10)
    os.symlink(tmp_path / "nowhere.jpg", root / "blobs" / "photo.jpg")
    assert "1 not a file (blobs/photo.jpg (a broken link))" in _refusal(root)


def _png_header(width: int, height: int) -> bytes:
    """A PNG that claims ``width``×``height`` pixels: all a decompression bomb needs to be opened."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


@pytest.mark.parametrize("width, height", [(20_000, 10_000), (10_000, 9_000)])  # past PIL's error, past its warning
def test_a_decompression_bomb_is_too_large_not_a_traceback(tmp_path, width, height):
    root = make_image_folder(tmp_path / "images", per_class=10)
    (root / "blobs" / "huge.png").write_bytes(_png_header(width, height))
    message = _refusal(root)
    assert "1 too large (blobs/huge.png (" in message and "downscale it" in message, message


def test_a_file_without_read_permission_is_one_line(tmp_path, monkeypatch):
    root = make_image_folder(tmp_path / "images", per_class=10)
    locked = root / "blobs" / "001.png"
    real_open = builtins.open

    def guarded(file, *args, **kwargs):  # what chmod 000 does for any user but root (and the tests run as root)
        if not isinstance(file, int) and os.fspath(file) == os.fspath(locked):
            raise PermissionError(13, "Permission denied", os.fspath(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded)
    monkeypatch.setattr(io, "open", guarded)
    assert "1 unreadable (blobs/001.png (Permission denied))" in _refusal(root)


def test_an_empty_class_folder_is_refused_by_name(tmp_path):
    root = make_image_folder(tmp_path / "images", per_class=10)
    (root / "zebras").mkdir()
    message = _refusal(root)
    assert "1 class(es) would get no training image: 'zebras' has 0" in message
    assert "each class needs at least 2 images" in message


def test_a_class_with_one_image_is_refused_not_left_out_of_training(tmp_path):
    root = make_image_folder(tmp_path / "images", per_class=10)
    make_image_folder(root, per_class=1, classes=("rare",))
    assert "'rare' has 1" in _refusal(root)


def test_an_empty_validation_split_is_refused(tmp_path):
    root = make_image_folder(tmp_path / "images", per_class=4)
    assert "the validation split is empty: every class has fewer than 5 images" in _refusal(root)


def test_only_unsupported_formats_say_what_was_skipped(tmp_path):
    root = tmp_path / "images"
    for name in ("cats", "dogs"):
        (root / name).mkdir(parents=True)
        for i in range(3):
            (root / name / f"{i}.heic").write_bytes(b"x")
    message = _refusal(root)
    assert "0 class sub-folder(s) with images (6 files skipped: 6 format not supported (6 .heic))" in message


def test_strong_imbalance_is_a_warning(tmp_path):
    root = make_image_folder(tmp_path / "images", per_class=3, classes=("stripes", "checks"))
    make_image_folder(root, per_class=40, classes=("blobs",))
    scan = _inspect(root).scan
    assert any("imbalanced: 'blobs' has 40 images, 'checks' 3 (13×)" in w for w in scan.warnings), scan.warnings


def test_a_class_name_that_labels_txt_cannot_hold_is_refused(tmp_path):
    root = make_image_folder(tmp_path / "images", per_class=10, classes=("stripes", "checks"))
    make_image_folder(root, per_class=10, classes=("two\nlines",))
    assert "class folder name(s) with a line break or control character: 'two\\nlines'; rename them" in _refusal(root)
