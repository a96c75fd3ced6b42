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


# ---- image folders at scale: formats, nesting, flat val/, bad files, transforms, seeds ------------

def test_imagefolder_reads_nested_class_folders_in_any_format(tmp_path: Path):
    from tests.image_folders import write_folder

    write_folder(tmp_path, per_class=6, nested=True, formats=("jpg", "png", "webp", "bmp"))
    (tmp_path / "red" / "part0" / "readme.txt").write_text("not an image")
    d = load_dataset("imagefolder", resolution=32, data_dir=str(tmp_path), seed=0)
    assert d.classes == ["blue", "green", "red"] and len(d.train) + len(d.valid) + len(d.test) == 18
    assert {p.suffix for ds in (d.train, d.valid, d.test) for p in ds.paths} == {".jpg", ".png", ".webp", ".bmp"}
    x, y = d.test[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and 0 <= y < 3
    # mean / std estimated from the training images: the normalised training pool is roughly centred
    assert d.mean is not None and all(0.1 < m < 0.9 for m in d.mean)
    xs = torch.stack([d.valid[i][0] for i in range(len(d.valid))])
    assert abs(float(xs.mean())) < 1.0


def test_imagefolder_given_mean_std_and_valid_size(tmp_path: Path):
    from search_client.data.datasets import FolderOptions
    from tests.image_folders import write_folder

    write_folder(tmp_path, per_class=5)
    opts = FolderOptions(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    d = load_dataset("imagefolder", resolution=16, data_dir=str(tmp_path), valid_size=3, folder=opts)
    assert len(d.valid) == 3 and d.mean == (0.5, 0.5, 0.5)
    with pytest.raises(ValueError, match="valid-size"):
        load_dataset("imagefolder", resolution=16, data_dir=str(tmp_path), valid_size=100, folder=opts)


def test_eval_transform_resizes_then_centre_crops(tmp_path: Path):
    """224 px: the short side goes to 256, then the centre 224 x 224: a border as wide as the crop
    leaves is cut off, and the centre survives."""
    from PIL import Image

    from search_client.data.vision import eval_resize, eval_transform

    assert eval_resize(224) == 256 and eval_resize(128) == 147
    arr = np.zeros((512, 640, 3), dtype=np.uint8)  # (H, W): short side 512 -> 256, so 2x down
    arr[16:-16, 16:-16] = 255  # a black border 16 px wide: 8 px after the resize, inside the 16 px cut
    x = eval_transform(224, (0.0,) * 3, (1.0,) * 3)(Image.fromarray(arr))
    assert x.shape == (3, 224, 224) and float(x.min()) > 0.9


def test_train_augmentation_is_a_function_of_the_items_seed(tmp_path: Path):
    from tests.image_folders import write_folder

    write_folder(tmp_path, per_class=4, size=(80, 60))
    d = load_dataset("imagefolder", resolution=24, data_dir=str(tmp_path), seed=0)
    assert d.train.random_transform and not d.valid.random_transform
    a, b, c = d.train[(0, 7)][0], d.train[(0, 7)][0], d.train[(0, 8)][0]
    assert torch.equal(a, b) and not torch.equal(a, c)
    state = torch.get_rng_state()
    d.train[(1, 3)]
    assert torch.equal(state, torch.get_rng_state())  # the caller's generator is left as it was


def test_epoch_sampler_resumes_at_its_position_with_the_same_seeds():
    from search_client.data.loading import EpochSampler, item_seed

    class Items(torch.utils.data.Dataset):
        random_transform = True

        def __len__(self):
            return 10

        def __getitem__(self, key):
            return key

    full = EpochSampler(Items(), world=1, rank=0, seed=3, with_seeds=True)
    full.set_epoch(2)
    later = EpochSampler(Items(), world=1, rank=0, seed=3, with_seeds=True)
    later.set_epoch(2)
    later.start = 4
    assert list(later) == list(full)[4:] and len(later) == 6
    assert all(s == item_seed(3, 2, i) for i, s in full)


def test_flat_val_folder_with_a_label_file(tmp_path: Path):
    from tests.image_folders import image, write_folder

    write_folder(tmp_path / "train", per_class=3)
    (tmp_path / "val").mkdir()
    names = []
    for i, cls in enumerate(["red", "blue", "green", "red"]):
        name = f"ILSVRC2012_val_{i:08d}.JPEG"
        image((200, 40, 40), (40, 30), seed=i).save(tmp_path / "val" / name, format="JPEG")
        names.append((name, cls))
    with pytest.raises(ValueError, match="--val-labels"):
        load_dataset("imagefolder", resolution=16, data_dir=str(tmp_path))
    # LOC_val_solution.csv style: a header, ids without extension, the synset first in the second column
    labels = tmp_path / "LOC_val_solution.csv"
    labels.write_text("ImageId,PredictionString\n" + "".join(
        f"{Path(n).stem},{c} 1 2 3 4\n" for n, c in names))
    from search_client.data.datasets import FolderOptions

    d = load_dataset("imagefolder", resolution=16, data_dir=str(tmp_path), folder=FolderOptions(str(labels)))
    by_name = {p.name: y for p, y in zip(d.test.paths, d.test.labels, strict=True)}
    assert by_name == {n: d.classes.index(c) for n, c in names}
    # "FILE INDEX" lines (0-based index into the sorted class names) read the same
    idx = tmp_path / "val.txt"
    idx.write_text("".join(f"{n} {d.classes.index(c)}\n" for n, c in names))
    d2 = load_dataset("imagefolder", resolution=16, data_dir=str(tmp_path), folder=FolderOptions(str(idx)))
    assert dict(zip([p.name for p in d2.test.paths], d2.test.labels, strict=True)) == by_name
    bad = tmp_path / "bad.txt"
    bad.write_text(f"{names[0][0]} red\n{names[1][0]} zebra\n")
    with pytest.raises(ValueError, match="zebra"):
        load_dataset("imagefolder", resolution=16, data_dir=str(tmp_path), folder=FolderOptions(str(bad)))


def test_corrupt_images_are_skipped_with_a_label_the_loss_ignores(tmp_path: Path, capfd):
    from search_client.data.images import SKIPPED_LABEL
    from tests.image_folders import corrupt, write_folder

    files = write_folder(tmp_path, per_class=4)
    corrupt(files[1])
    files[2].write_bytes(b"not a jpeg at all")
    d = load_dataset("imagefolder", resolution=16, data_dir=str(tmp_path), valid_size=2)
    everything = torch.utils.data.ConcatDataset([d.train, d.valid, d.test])
    ys = [y for _, y in DataLoader(everything, batch_size=4, num_workers=2)]  # in workers, never a crash
    labels = torch.cat(ys)
    assert int((labels == SKIPPED_LABEL).sum()) == 2 and len(labels) == 12
    err = capfd.readouterr().err
    assert "skipping unreadable image" in err and files[2].name in err


def test_class_without_images_and_missing_folder_are_refused(tmp_path: Path):
    from tests.image_folders import write_folder

    write_folder(tmp_path / "data", per_class=2)
    (tmp_path / "data" / "empty_class").mkdir()
    with pytest.raises(ValueError, match="empty_class"):
        load_dataset("imagefolder", resolution=16, data_dir=str(tmp_path / "data"))
    with pytest.raises(FileNotFoundError, match="not a folder"):
        load_dataset("imagefolder", resolution=16, data_dir=str(tmp_path / "nope"))
