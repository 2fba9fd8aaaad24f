"""robustreg.data: LabeledData, the loaders and data SPECs."""

from __future__ import annotations

import gzip
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.io import encode_jpeg

from robustreg import UnknownNameError
from robustreg.data import (
    CIFAR10_CLASSES,
    LabeledData,
    builtin_dataset_specs,
    load_cifar10_jpeg,
    load_data,
    load_digits,
    parse_data_spec,
)

BUILTIN = {"digits", "digits28", "mnist", "cifar10", "cifar100", "svhn", "cifar10-jpeg", "npz", "imagefolder"}
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


# --- LabeledData -------------------------------------------------------------------------------

def test_labeled_data_uint8_and_float():
    x = torch.arange(2 * 1 * 2 * 2, dtype=torch.uint8).reshape(2, 1, 2, 2) * 60
    y = torch.tensor([1, 0])
    data = LabeledData(x, y, 3, "toy", "test")
    assert len(data) == 2 and data.num_classes == 3 and data.shape == (1, 2, 2)
    img, label = data[1]
    assert img.dtype == torch.float32 and label.dtype == torch.int64 and int(label) == 0
    torch.testing.assert_close(img, x[1].float() / 255)
    xs, ys = data.tensors()
    assert xs.dtype == torch.float32 and float(xs.max()) <= 1.0 and ys.tolist() == [1, 0]
    xs[0] += 1  # a copy: the data is untouched
    assert data.x.dtype == torch.uint8 and int(data.x[0, 0, 0, 1]) == 60
    xf = torch.rand(3, 2, 4, 4)
    fdata = LabeledData(xf, torch.tensor([0, 1, 1]))
    assert fdata.num_classes == 2
    x1, y1 = fdata.tensors(1)
    x1.zero_()
    assert float(fdata.x[0].abs().sum()) > 0 and y1.tolist() == [0]
    sub = fdata.subset([2, 0])
    assert sub.y.tolist() == [1, 0] and sub.num_classes == 2 and torch.equal(sub.x[1], xf[0])
    assert len(fdata.subset(range(1, 3))) == 2
    assert len(fdata.subset([])) == 0
    img, _ = fdata[0]
    img.zero_()
    assert float(fdata.x[0].abs().sum()) > 0


def test_labeled_data_errors():
    data = LabeledData(torch.rand(3, 1, 2, 2), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="n=4 is larger than the 3 images"):
        data.tensors(4)
    with pytest.raises(ValueError, match="n must be"):
        data.tensors(-1)
    with pytest.raises(IndexError):
        data.subset([3])
    with pytest.raises(ValueError, match="integer positions"):
        data.subset(torch.tensor([True, False, True]))
    with pytest.raises(ValueError, match="N x C x H x W"):
        LabeledData(torch.rand(3, 2, 2), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="one label per image"):
        LabeledData(torch.rand(3, 1, 2, 2), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="integer class indices"):
        LabeledData(torch.rand(2, 1, 2, 2), torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="out of range"):
        LabeledData(torch.rand(2, 1, 2, 2), torch.tensor([0, 5]), num_classes=3)
    with pytest.raises(ValueError, match=">= 0"):
        LabeledData(torch.rand(2, 1, 2, 2), torch.tensor([0, -1]))
    with pytest.raises(ValueError, match="dtype"):
        LabeledData(torch.zeros(2, 1, 2, 2, dtype=torch.int32), torch.tensor([0, 1]))


def test_labeled_data_works_with_a_dataloader():
    data = load_digits("test")
    batch_x, batch_y = next(iter(torch.utils.data.DataLoader(data, batch_size=16)))
    assert batch_x.shape == (16, 1, 8, 8) and batch_y.dtype == torch.int64


# --- digits ------------------------------------------------------------------------------------

def test_digits_split_is_fixed_disjoint_and_stratified():
    train, test = load_data("digits", "train"), load_data("digits")
    assert (len(train), len(test)) == (1437, 360)
    assert train.x.shape[1:] == (1, 8, 8) and train.x.dtype == torch.float32
    assert float(train.x.min()) >= 0.0 and float(train.x.max()) == 1.0
    assert train.num_classes == 10 and (train.name, train.split) == ("digits", "train")
    counts = torch.bincount(test.y, minlength=10)
    assert int(counts.min()) >= 35 and int(counts.max()) <= 37  # stratified: ~36 per class
    rows_train = {tuple(r) for r in train.x.flatten(1).tolist()}
    rows_test = [tuple(r) for r in test.x.flatten(1).tolist()]
    assert sum(r in rows_train for r in rows_test) < 10  # (a few digits images are exact duplicates)
    again = load_data("digits")
    assert torch.equal(again.x, test.x) and torch.equal(again.y, test.y)


def test_digits28_same_split_upsampled():
    d8, d28 = load_data("digits"), load_data("digits28")
    assert d28.x.shape == (360, 1, 28, 28) and torch.equal(d8.y, d28.y)
    assert float(d28.x.min()) >= 0.0 and float(d28.x.max()) <= 1.0
    down = torch.nn.functional.adaptive_avg_pool2d(d28.x, 8)
    assert float((down - d8.x).abs().mean()) < 0.1


def test_bad_split():
    with pytest.raises(ValueError, match="split must be one of 'train', 'test', got 'val'"):
        load_data("digits", "val")


# --- specs and the registry --------------------------------------------------------------------

def test_parse_data_spec():
    assert parse_data_spec("digits") == ("digits", None)
    assert parse_data_spec("npz:/a/b.npz") == ("npz", "/a/b.npz")
    assert parse_data_spec("npz:C:/data/x.npz") == ("npz", "C:/data/x.npz")
    for bad, match in [("", "non-empty"), (":x", "no dataset name"), ("npz:", "empty path")]:
        with pytest.raises(ValueError, match=match):
            parse_data_spec(bad)


def test_registered_datasets(registry):
    assert BUILTIN <= set(registry.entries("datasets"))
    assert set(builtin_dataset_specs()) == BUILTIN
    assert registry.dataset("mnist").needs_root and not registry.dataset("digits").needs_root
    assert len(load_data("digits", registry=registry)) == 360


def test_load_data_errors(registry):
    with pytest.raises(ValueError, match="needs a location: use the spec 'mnist:PATH'"):
        load_data("mnist")
    with pytest.raises(UnknownNameError, match="digits"):
        load_data("digitz")
    with pytest.raises(UnknownNameError, match="cifar10"):
        load_data("cifar-10:/x", registry=registry)


# --- npz ---------------------------------------------------------------------------------------

def test_npz_nhwc_uint8(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(5, 6, 6, 3), dtype=np.uint8)
    y = np.array([0, 1, 2, 3, 9])
    np.savez(tmp_path / "a.npz", x=x, y=y)
    data = load_data(f"npz:{tmp_path / 'a.npz'}")
    assert data.x.shape == (5, 3, 6, 6) and data.x.dtype == torch.uint8 and data.num_classes == 10
    torch.testing.assert_close(data[4][0], torch.from_numpy(x[4]).permute(2, 0, 1).float() / 255)
    assert data.y.tolist() == y.tolist() and data.name == "a"
    with pytest.raises(ValueError, match="x_train"):
        load_data(f"npz:{tmp_path / 'a.npz'}", "train")


def test_npz_nchw_float_both_splits(tmp_path):
    rng = np.random.default_rng(1)
    arrays = {
        "x_train": rng.random((4, 1, 5, 5), dtype=np.float32), "y_train": np.array([0, 1, 0, 1]),
        "x_test": rng.random((2, 1, 5, 5)), "y_test": np.array([[1], [0]]),  # float64, column labels
        "num_classes": np.array(3),
    }
    np.savez(tmp_path / "b.npz", **arrays)
    train = load_data(f"npz:{tmp_path / 'b.npz'}", "train")
    test = load_data(f"npz:{tmp_path / 'b.npz'}", "test")
    assert train.x.shape == (4, 1, 5, 5) and test.x.dtype == torch.float32 and test.y.tolist() == [1, 0]
    assert train.num_classes == 3 and train.split == "train"
    np.testing.assert_allclose(test.x.numpy(), arrays["x_test"], rtol=1e-6)


def test_npz_grayscale_nhw(tmp_path):
    np.savez(tmp_path / "g.npz", x=np.zeros((3, 7, 7), np.uint8), y=np.array([0, 1, 2]))
    assert load_data(f"npz:{tmp_path / 'g.npz'}").x.shape == (3, 1, 7, 7)


@pytest.mark.parametrize("arrays,match", [
    ({"x": np.full((2, 4, 4, 3), 2.0), "y": np.array([0, 1])}, r"must be in \[0, 1\].*store them as uint8"),
    ({"x": np.full((2, 4, 4, 3), np.nan), "y": np.array([0, 1])}, "NaN"),
    ({"x": np.zeros((2, 4, 4, 3), np.int32), "y": np.array([0, 1])}, "dtype int32"),
    ({"x": np.zeros((2, 5, 5, 5), np.uint8), "y": np.array([0, 1])}, "channel axis"),
    ({"x": np.zeros((2, 4, 4, 3), np.uint8), "y": np.array([0, 1, 2])}, "one label per image"),
    ({"x": np.zeros((2, 4, 4, 3), np.uint8), "y": np.array([0.5, 1.0])}, "integer class indices"),
    ({"x": np.zeros((2, 4, 4, 3), np.uint8), "y": np.array([0, -1])}, "negative"),
    ({"images": np.zeros((2, 4, 4, 3), np.uint8), "labels": np.array([0, 1])}, "holds images, labels"),
])
def test_npz_rejects(tmp_path, arrays, match):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match=match):
        load_data(f"npz:{tmp_path / 'bad.npz'}")


def test_npz_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.npz"):
        load_data(f"npz:{tmp_path / 'absent.npz'}")


# --- MNIST idx ---------------------------------------------------------------------------------

def _write_idx(path: Path, array: np.ndarray, gz: bool) -> None:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if gz:
        with gzip.open(path.with_name(path.name + ".gz"), "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)


def test_mnist_idx_synthetic(tmp_path):
    rng = np.random.default_rng(2)
    x_test, y_test = rng.integers(0, 256, (6, 28, 28)), np.array([0, 1, 2, 3, 4, 5])
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", x_test, gz=True)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", y_test, gz=False)
    data = load_data(f"mnist:{tmp_path}")
    assert data.x.shape == (6, 1, 28, 28) and data.x.dtype == torch.uint8
    assert np.array_equal(data.x[:, 0].numpy(), x_test) and data.y.tolist() == y_test.tolist()
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        load_data(f"mnist:{tmp_path}", "train")
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    _write_idx(raw / "train-images-idx3-ubyte", x_test[:4], gz=False)
    _write_idx(raw / "train-labels-idx1-ubyte", y_test[:4], gz=True)
    assert len(load_data(f"mnist:{tmp_path}", "train")) == 4
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x09abc")
    with pytest.raises(ValueError, match="header says"):
        load_data(f"mnist:{tmp_path}")
    with pytest.raises(FileNotFoundError, match="MNIST folder not found"):
        load_data(f"mnist:{tmp_path / 'nowhere'}")


def test_mnist_real_test_set(mnist_dir):
    data = load_data(f"mnist:{mnist_dir}")
    assert len(data) == 10000 and data.x.shape == (10000, 1, 28, 28) and data.x.dtype == torch.uint8
    assert torch.bincount(data.y, minlength=10).tolist() == MNIST_TEST_COUNTS
    assert data.y[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    x, y = data.tensors(100)
    assert x.shape == (100, 1, 28, 28) and float(x.max()) == 1.0 and float(x.min()) == 0.0


# --- torchvision folders (no files here: the errors) -------------------------------------------

@pytest.mark.parametrize("name", ["cifar10", "cifar100", "svhn"])
def test_torchvision_folders_missing(tmp_path, name):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_data(f"{name}:{tmp_path}")
    with pytest.raises(FileNotFoundError, match="not found"):
        load_data(f"{name}:{tmp_path / 'absent'}", "train")


# --- CIFAR-10 JPEG -----------------------------------------------------------------------------

def _jpeg_folder(root: Path, labels: list[int]) -> dict[tuple[int, int], torch.Tensor]:
    """Write test/<class>/<NNNN>.jpg for the given official-order labels; return (class, rank) -> image."""
    images: dict[tuple[int, int], torch.Tensor] = {}
    counts = [0] * 10
    for i, label in enumerate(labels):
        img = torch.full((3, 8, 8), 20 * i + 10, dtype=torch.uint8)  # flat colours survive JPEG well
        folder = root / "test" / CIFAR10_CLASSES[label]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{counts[label]:04d}.jpg").write_bytes(encode_jpeg(img, quality=95).numpy().tobytes())
        images[(label, counts[label])] = img
        counts[label] += 1
    return images


@pytest.mark.filterwarnings("ignore:The image decoding and encoding:DeprecationWarning")
def test_cifar10_jpeg_folder_tarball_and_order(tmp_path):
    labels = [3, 8, 8, 0, 3]
    _jpeg_folder(tmp_path / "imgs", labels)
    class_major = load_data(f"cifar10-jpeg:{tmp_path / 'imgs'}")
    assert class_major.y.tolist() == sorted(labels) and class_major.x.shape == (5, 3, 8, 8)
    official = load_cifar10_jpeg("test", tmp_path / "imgs", y_all=np.array(labels))
    assert official.y.tolist() == labels
    brightness = official.x.float().mean(dim=(1, 2, 3))
    assert torch.all(brightness.diff() > 0)  # image i was written with value 20 i + 10
    with tarfile.open(tmp_path / "jpegs.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "imgs" / "test", arcname="test")
    from_tar = load_data(f"cifar10-jpeg:{tmp_path / 'jpegs.tar.gz'}")
    assert torch.equal(from_tar.x, class_major.x) and torch.equal(from_tar.y, class_major.y)
    with pytest.raises(ValueError, match="no 'train' split"):
        load_data(f"cifar10-jpeg:{tmp_path / 'imgs'}", "train")
    with pytest.raises(ValueError, match="missing"):
        load_cifar10_jpeg("test", tmp_path / "imgs", y_all=np.array(labels + [1]))
    with pytest.raises(FileNotFoundError, match="neither"):
        load_data(f"cifar10-jpeg:{tmp_path / 'nothing'}")


def test_cifar10_npz_and_jpeg_agree(cifar_npz):
    exact = load_data(f"npz:{cifar_npz}")
    assert exact.x.shape == (932, 3, 32, 32) and exact.x.dtype == torch.uint8 and exact.num_classes == 10
    tarball = cifar_npz.parent / "cifar10_test_jpeg_q75_yoongikim.tar.gz"
    if not tarball.is_file():
        pytest.skip(f"the CIFAR-10 JPEG tarball is not at {tarball}")
    jpeg = load_data(f"cifar10-jpeg:{cifar_npz.parent}")  # y_all found in the sibling npz: official order
    assert len(jpeg) == 10000 and torch.bincount(jpeg.y).tolist() == [1000] * 10
    assert torch.equal(jpeg.y[:932], exact.y)
    err = (jpeg.x[:932].float() - exact.x.float()).abs().mean() / 255
    assert err < 10 / 255  # lossy JPEG (~5.8/255), but the same images in the same order
