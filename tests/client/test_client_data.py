"""Datasets: shapes, deterministic disjoint splits, CIFAR-10 pickles and image folders written here."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib import image as mpimg
from torch.utils.data import DataLoader

from search_client.data.datasets import CIFAR_MEAN, CIFAR_STD, load_dataset


def _indices(ds) -> set[int]:
    return set(ds.indices.tolist())


def test_digits_shapes_and_sizes():
    d = load_dataset("digits", resolution=24)
    assert d.name == "digits" and d.num_classes == 10
    assert len(d.train) + len(d.valid) + len(d.test) == 1797
    x, y = d.train[0]
    assert x.shape == (3, 24, 24) and x.dtype == torch.float32
    assert isinstance(y, int) and 0 <= y < 10
    assert torch.equal(x[0], x[1]) and torch.equal(x[1], x[2])  # grey replicated to 3 channels
    xb, yb = next(iter(DataLoader(d.train, batch_size=16)))
    assert xb.shape == (16, 3, 24, 24) and yb.shape == (16,)
    assert set(d.train.targets) == set(range(10))


def test_digits_normalised_on_the_training_pool():
    d = load_dataset("digits", resolution=8)  # stored size: no resize, so the statistics are exact
    pool = [*d.train, *d.valid]
    xs = torch.stack([x for x, _ in pool])
    assert abs(xs.mean().item()) < 1e-4
    assert abs(xs.std().item() - 1) < 1e-3


def test_digits_split_deterministic_and_disjoint():
    a, b, c = (load_dataset("digits", resolution=8, seed=s) for s in (0, 0, 1))
    assert _indices(a.train) == _indices(b.train) and _indices(a.valid) == _indices(b.valid)
    assert _indices(a.train) != _indices(c.train)
    for d in (a, c):
        assert not _indices(d.train) & _indices(d.valid)
        assert not (_indices(d.train) | _indices(d.valid)) & _indices(d.test)
    # the held-out test part never moves with the seed
    assert _indices(a.test) == _indices(c.test)
    assert _indices(a.train) | _indices(a.valid) == _indices(c.train) | _indices(c.valid)


def test_digits_num_classes_mismatch():
    with pytest.raises(ValueError, match="10 classes"):
        load_dataset("digits", resolution=8, num_classes=5)


def test_unknown_dataset_named():
    with pytest.raises(ValueError, match="imagenet"):
        load_dataset("imagenet", resolution=32)


# ---- CIFAR-10 -----------------------------------------------------------------------------------

def write_fake_cifar(root: Path, per_batch: int = 6, n_test: int = 5) -> dict[str, np.ndarray]:
    """The python CIFAR-10 layout: pickled dicts of bytes keys, data rows (R 1024, G 1024, B 1024)."""
    rng = np.random.default_rng(0)
    written = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        n = n_test if name == "test_batch" else per_batch
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, size=n)]
        with open(root / name, "wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"labels": labels, b"data": data,
                         b"filenames": [b"x.png"] * n}, f)
        written[name] = (data, labels)
    with open(root / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [f"c{i}".encode() for i in range(10)]}, f)
    return written


def test_cifar10_from_pickles(tmp_path: Path):
    written = write_fake_cifar(tmp_path)
    d = load_dataset("cifar10", resolution=32, data_dir=str(tmp_path), seed=3)
    assert d.num_classes == 10 and d.classes == [f"c{i}" for i in range(10)]
    assert len(d.train) + len(d.valid) == 30 and len(d.test) == 5
    assert not _indices(d.train) & _indices(d.valid)
    # first test image, un-normalised, is the stored uint8 image with channels in R, G, B order
    x, y = d.test[0]
    data, labels = written["test_batch"]
    back = x * torch.tensor(CIFAR_STD).view(3, 1, 1) + torch.tensor(CIFAR_MEAN).view(3, 1, 1)
    expect = torch.from_numpy(data[0].reshape(3, 32, 32)).float() / 255
    assert torch.allclose(back, expect, atol=1e-5)
    assert y == labels[0]
    # training images are data_batch_1..5 in order: position 7 is data_batch_2[1]
    assert d.train.images.shape == (30, 3, 32, 32)
    assert torch.equal(d.train.images[7], torch.from_numpy(written["data_batch_2"][0][1].reshape(3, 32, 32)))


def test_cifar10_resized(tmp_path: Path):
    write_fake_cifar(tmp_path)
    d = load_dataset("cifar10", resolution=20, data_dir=str(tmp_path))
    assert d.train[0][0].shape == (3, 20, 20) and d.test[0][0].shape == (3, 20, 20)


def test_cifar10_accepts_parent_of_extracted_folder(tmp_path: Path):
    (tmp_path / "cifar-10-batches-py").mkdir()
    write_fake_cifar(tmp_path / "cifar-10-batches-py")
    assert len(load_dataset("cifar10", resolution=32, data_dir=str(tmp_path)).test) == 5


def test_cifar10_missing_file_named(tmp_path: Path):
    write_fake_cifar(tmp_path)
    (tmp_path / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match="data_batch_3") as e:
        load_dataset("cifar10", resolution=32, data_dir=str(tmp_path))
    assert str(tmp_path) in str(e.value)


def test_cifar10_needs_data_dir():
    with pytest.raises(ValueError, match="data-dir"):
        load_dataset("cifar10", resolution=32)


# ---- image folder -------------------------------------------------------------------------------

COLOURS = {"blue": (0.0, 0.0, 1.0), "red": (1.0, 0.0, 0.0)}


def write_folder(root: Path, per_class: int = 10) -> None:
    for cls, rgb in COLOURS.items():
        (root / cls).mkdir(parents=True)
        for i in range(per_class):
            img = np.ones((12, 9, 3)) * np.array(rgb) * (0.6 + 0.04 * i)  # non-square on purpose
            mpimg.imsave(root / cls / f"{i}.png", img)
    (root / "red" / "notes.txt").write_text("not an image")


def test_imagefolder(tmp_path: Path):
    write_folder(tmp_path)
    d = load_dataset("imagefolder", resolution=16, data_dir=str(tmp_path), seed=1)
    assert d.classes == ["blue", "red"] and d.num_classes == 2
    assert len(d.train) + len(d.valid) + len(d.test) == 20
    for ds in (d.train, d.valid, d.test):
        for i in range(len(ds)):
            x, y = ds[i]
            assert x.shape == (3, 16, 16)
            red_minus_blue = (x[0] - x[2]).mean().item()  # normalised, but the sign survives
            assert (red_minus_blue > 0) == (y == 1)
    train_paths = {p.name + p.parent.name for p in d.train.paths}
    valid_paths = {p.name + p.parent.name for p in d.valid.paths}
    test_paths = {p.name + p.parent.name for p in d.test.paths}
    assert not train_paths & valid_paths and not (train_paths | valid_paths) & test_paths


def test_imagefolder_with_train_and_test_folders(tmp_path: Path):
    write_folder(tmp_path / "train", per_class=5)
    write_folder(tmp_path / "test", per_class=2)
    d = load_dataset("imagefolder", resolution=8, data_dir=str(tmp_path))
    assert len(d.test) == 4 and len(d.train) + len(d.valid) == 10


def test_imagefolder_empty(tmp_path: Path):
    (tmp_path / "cats").mkdir()
    with pytest.raises(FileNotFoundError, match="no images"):
        load_dataset("imagefolder", resolution=8, data_dir=str(tmp_path))


# ---- synthetic ----------------------------------------------------------------------------------

def test_synthetic_is_learnable():
    d = load_dataset("synthetic", resolution=16, synthetic_size=400, num_classes=4, seed=0)
    assert d.num_classes == 4 and len(d.train) + len(d.valid) == 400
    train = [d.train[i] for i in range(len(d.train))]
    xs = torch.stack([x for x, _ in train]).flatten(1)  # (N, 3*16*16)
    ys = torch.tensor([y for _, y in train])
    centroids = torch.stack([xs[ys == k].mean(0) for k in range(4)])  # (K, D)
    test = [d.test[i] for i in range(len(d.test))]
    xt = torch.stack([x for x, _ in test]).flatten(1)
    yt = torch.tensor([y for _, y in test])
    acc = (torch.cdist(xt, centroids).argmin(1) == yt).float().mean().item()
    assert acc > 0.5  # chance is 0.25


def test_synthetic_same_data_for_every_seed():
    a = load_dataset("synthetic", resolution=8, synthetic_size=64, seed=0)
    b = load_dataset("synthetic", resolution=8, synthetic_size=64, seed=1)
    assert torch.equal(a.test[0][0], b.test[0][0])
    assert _indices(a.valid) != _indices(b.valid)


def test_mnist_from_mlxtends_wheel_splits_without_download():
    from search_client.data.datasets import load_dataset

    a = load_dataset("mnist", resolution=32, seed=0)
    b = load_dataset("mnist", resolution=32, seed=1)
    assert (len(a.train), len(a.valid), len(a.test), a.num_classes) == (3200, 800, 1000, 10)
    assert set(a.train.indices.tolist()).isdisjoint(a.valid.indices.tolist())
    assert set(a.train.indices.tolist() + a.valid.indices.tolist()).isdisjoint(a.test.indices.tolist())
    assert a.test.indices.tolist() == b.test.indices.tolist()  # the test split ignores the seed
    assert a.train.indices.tolist() != b.train.indices.tolist()
    x, y = a.train[0]
    assert x.shape == (3, 32, 32) and 0 <= y < 10
    assert sorted(set(a.test.targets)) == list(range(10))
