"""The input pipeline at scale: shuffles file names (not decoded images), decodes once into a uint8 cache."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from steps.config import DataConfig
from steps.input_cache import CacheConfig
from tests.images import make_image_folder


def _indexed_folder(root, n: int):
    """``n`` 8×8 images whose colour encodes their number (R + 256·G), in two classes."""
    for i in range(n):
        folder = root / ("even" if i % 2 == 0 else "odd")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((8, 8, 3), (i % 256, i // 256, 0), np.uint8)).save(folder / f"{i:05d}.png")
    return root


def _ids(images: np.ndarray) -> np.ndarray:
    return images[:, 0, 0, 0].astype(np.int64) + 256 * images[:, 0, 0, 1].astype(np.int64)


@pytest.fixture(scope="module")
def big_folder(tmp_path_factory):
    return _indexed_folder(tmp_path_factory.mktemp("indexed") / "images", 4000)


@pytest.mark.parametrize("mode", ["off", "memory"])
def test_an_epoch_is_a_full_shuffle_of_the_split_not_a_buffer(big_folder, mode, tmp_path):
    """A 2,048-image shuffle buffer could not put anything from past position 2,048 in the first batch."""
    from steps import data

    split = data.load(DataConfig(dataset=str(big_folder), image_size=8, min_test_images=1),
                      cache=CacheConfig(mode=mode, directory=tmp_path)).train
    assert len(split) == 2800
    fixed = np.concatenate([_ids(x) for x, _ in split.numpy_batches(512)])
    position = {image_id: p for p, image_id in enumerate(fixed)}
    epochs = split.batches(64, shuffle_seed=1)
    first, second = [np.concatenate([_ids(x.numpy().astype(np.uint8)) for x, _ in epochs]) for _ in range(2)]
    assert sorted(first) == sorted(fixed) == sorted(second), "every image once per epoch"
    assert not np.array_equal(first, second), "a new order every epoch"
    assert max(position[i] for i in first[:64]) >= 2048


def test_decoding_runs_once_then_the_files_are_not_read_again(tmp_path):
    from steps import data

    root = make_image_folder(tmp_path / "images", per_class=20)
    cfg = DataConfig(dataset=str(root), image_size=16, min_test_images=1)
    plain = data.load(cfg, cache=CacheConfig(mode="off"))
    expected = [np.concatenate([x for x, _ in s.numpy_batches(7)]) for s in (plain.train, plain.test)]
    for mode in ("memory", "disk"):
        splits = data.load(cfg, cache=CacheConfig(mode=mode, directory=tmp_path / f"cache-{mode}"))
        for split in (splits.train, splits.test):
            split.ensure_cached()
            assert split.store.kind == mode
        moved = shutil.move(root, tmp_path / "moved")  # the files are gone: only the cache can answer
        try:
            got = [np.concatenate([x for x, _ in s.numpy_batches(7)]) for s in (splits.train, splits.test)]
            for want, have in zip(expected, got):
                np.testing.assert_array_equal(want, have)
            epoch = np.concatenate([x.numpy() for x, _ in splits.train.batches(8, shuffle_seed=3)])
            assert epoch.dtype == np.float32 and len(epoch) == len(splits.train)
        finally:
            shutil.move(moved, root)
    cache_files = list((tmp_path / "cache-disk").iterdir())
    assert sorted(f.stat().st_size for f in cache_files) == sorted(len(s) * 16 * 16 * 3 for s in (splits.train, splits.test))


def test_auto_cache_keeps_memory_within_its_budget(tmp_path):
    from steps import data

    root = make_image_folder(tmp_path / "images", per_class=20)
    cfg = DataConfig(dataset=str(root), image_size=16, min_test_images=1)
    test_bytes = 12 * 16 * 16 * 3  # 3 classes × 4 test images
    splits = data.load(cfg, cache=CacheConfig(mode="auto", directory=tmp_path / "c", memory_bytes=test_bytes))
    splits.train.ensure_cached()  # 42 images: over the budget
    splits.test.ensure_cached()  # 12 images: within it
    assert (splits.train.store.kind, splits.test.store.kind) == ("disk", "memory")


def test_a_dataset_path_that_does_not_exist_says_so(tmp_path):
    from steps import data

    missing = tmp_path / "no" / "such" / "folder"
    with pytest.raises(data.DataError, match=f"dataset path {missing} does not exist"):
        data.inspect(DataConfig(dataset=str(missing)))
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    with pytest.raises(data.DataError, match="is a file, not a folder"):
        data.inspect(DataConfig(dataset=str(a_file)))
