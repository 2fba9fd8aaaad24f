"""Data at any size (issue 22): ``imagefolder:DIR`` from the command line and a Dataset streamed through the engine.

The folders are made of real CIFAR-10 test JPEGs (the shared data's tarball; the tests skip without it).  What
is checked: the CLI reads an ImageFolder at ``--resize``/``--center-crop`` and fingerprints exactly the images
torchvision's own ImageFolder gives; bad folders and images are one line naming ``--data``; a streamed
dataset gives the report of its tensors and resumes their state; a changed pixel is refused on resume; and the
engine never holds more than a few batches of images, however many the dataset has.  ``compare`` streams the
same way: its report on a dataset is the one on its tensors, its CLI reads ``imagefolder:DIR`` and recognises its
report, and it holds a few batches, not the dataset; and so does ``curve`` (the minimal_norm plugin).
"""

from __future__ import annotations

import gc
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from robustreg import Registry
from robustreg.cli import main
from robustreg.data import FolderData
from robustreg.errors import UserError
from robustreg.evaluation import data_fingerprint, evaluate

CLASSES = ("airplane", "automobile", "bird")
PER_CLASS = 3

MODEL = '''
import torch
from torch import nn


def factory():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(),
                         nn.Linear(128, 3))
'''


@pytest.fixture(scope="module")
def jpeg_tar(shared_dir: Path) -> Path:
    path = shared_dir / "data" / "cifar10" / "cifar10_test_jpeg_q75_yoongikim.tar.gz"
    if not path.exists():
        pytest.skip(f"the CIFAR-10 test JPEGs not found at {path}")
    return path


def _folder(tar_path: Path, root: Path, per_class: int = PER_CLASS, suffix: str = ".jpg") -> Path:
    """``root/<class>/<NNNN><suffix>``: the first ``per_class`` CIFAR-10 test JPEGs of each class in CLASSES
    (re-saved losslessly as PNG when ``suffix`` is .png)."""
    wanted = {f"test/{c}/{k:04d}.jpg": (c, k) for c in CLASSES for k in range(per_class)}
    with tarfile.open(tar_path, "r:gz") as tar:
        for member in tar:
            if member.name in wanted:
                cls, k = wanted.pop(member.name)
                (root / cls).mkdir(parents=True, exist_ok=True)
                data = tar.extractfile(member)
                assert data is not None
                with Image.open(data) as img:
                    img.convert("RGB").save(root / cls / f"{k:04d}{suffix}")
            if not wanted:
                break
    return root


def _torchvision_tensors(root: Path, resize: int | None = None, crop: int | None = None):
    """The folder read by torchvision's own ImageFolder and transforms: the independent reference."""
    from torchvision import datasets, transforms

    steps = ([transforms.Resize(resize)] if resize else []) + ([transforms.CenterCrop(crop)] if crop else [])
    ds = datasets.ImageFolder(str(root), transform=transforms.Compose([*steps, transforms.ToTensor()]))
    x = torch.stack([ds[i][0] for i in range(len(ds))])
    return x, torch.tensor(ds.targets), ds


def _net() -> nn.Module:
    namespace: dict = {}
    exec(MODEL, namespace)
    return namespace["factory"]().eval()


def _numbers(report: dict) -> list:
    return [report["clean_accuracy"], report["n"], report["data"]["fingerprint"],
            [(r["attack"], r["eps"], r["robust_accuracy"]) for r in report["results"]]]


RUN = {"attacks": ["fgsm", ("pgd", {"steps": 2})], "eps": 8 / 255, "progress": False, "seed": 0, "batch_size": 4}


@pytest.fixture(scope="module")
def reg() -> Registry:
    return Registry.create()


# --------------------------------------------------------------------------------------------
# the command line: imagefolder:DIR --resize --center-crop
# --------------------------------------------------------------------------------------------
def test_cli_evaluates_an_imagefolder_at_the_asked_size(jpeg_tar: Path, tmp_path: Path, capsys) -> None:
    root = _folder(jpeg_tar, tmp_path / "imgs")
    (tmp_path / "net.py").write_text(MODEL)
    out = tmp_path / "run"
    code = main(["evaluate", "--model", f"{tmp_path / 'net.py'}:factory", "--data", f"imagefolder:{root}",
                 "--resize", "40", "--center-crop", "36", "--attacks", "fgsm", "--eps", "8/255", "--batch-size", "4",
                 "--out", str(out), "--quiet"])
    assert code == 0, capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    x, y, _ = _torchvision_tensors(root, 40, 36)
    assert x.shape == (len(CLASSES) * PER_CLASS, 3, 36, 36)
    assert report["n"] == len(y) and report["data"]["read"] == "streamed"
    assert report["data"]["num_classes"] == len(CLASSES)
    # the same bytes as torchvision's ImageFolder + Resize(40) + CenterCrop(36) + ToTensor, every image and label
    assert report["data"]["fingerprint"] == data_fingerprint(x, y)


@pytest.mark.parametrize("case, words", [
    ("missing", "is not a folder; expected DIR/<class>/<image>"),
    ("no classes", "holds no class folders"),
    ("no images", "the class folders hold no images; allowed extensions: .jpg"),
    ("unreadable", "cannot be read (UnidentifiedImageError"),
    ("mixed sizes", "has shape (3, 40, 36), the first has (3, 32, 32); every image must have one size"),
    ("resize elsewhere", "--resize applies to --data imagefolder:DIR only, got --data 'digits'"),
    ("bad resize", "--resize 0: must be a positive number of pixels"),
])
def test_cli_bad_folders_are_one_line(jpeg_tar: Path, tmp_path: Path, capsys, case: str, words: str) -> None:
    root, extra = tmp_path / "imgs", ["--resize", "40", "--center-crop", "32"]
    if case == "no classes":
        root.mkdir()
    elif case == "no images":
        (root / "cat").mkdir(parents=True)
        (root / "cat" / "notes.txt").write_text("not an image")
    elif case == "mixed sizes":
        _folder(jpeg_tar, root)
        Image.new("RGB", (36, 40)).save(root / "bird" / "0009.png")  # the last image, 36 wide and 40 high
        extra = []
    elif case in ("unreadable", "bad resize"):
        _folder(jpeg_tar, root)
        (root / "bird" / "0009.jpg").write_bytes(b"not a jpeg at all")  # the last image: read by the engine
        extra = ["--resize", "0"] if case == "bad resize" else extra
    spec = "digits" if case == "resize elsewhere" else f"imagefolder:{root}"
    (tmp_path / "net.py").write_text(MODEL)
    code = main(["evaluate", "--model", f"{tmp_path / 'net.py'}:factory", "--data", spec, *extra,
                 "--attacks", "fgsm", "--eps", "8/255", "--quiet", "--any-input-size"])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert words in err and len(err.splitlines()) == 1, err
    if case not in ("resize elsewhere", "bad resize"):
        named = str(root / "bird" / "0009.png") if case == "mixed sizes" else f"imagefolder:{root}"
        assert named in err  # the argument's value (or the image's file) is named


# --------------------------------------------------------------------------------------------
# Python: a streamed dataset gives its tensors' report, resumes their state, refuses changed data
# --------------------------------------------------------------------------------------------
def test_streamed_folder_gives_the_tensors_report_and_resumes_their_state(jpeg_tar: Path, tmp_path: Path,
                                                                          reg: Registry) -> None:
    from torch.utils.data import DataLoader

    root = _folder(jpeg_tar, tmp_path / "imgs")
    x, y, torchvision_folder = _torchvision_tensors(root)
    state = tmp_path / "state.pt"
    reference = evaluate(_net(), (x, y), registry=reg, state_path=state, keep_state=True, **RUN)
    assert reference["data"]["read"] == "in memory"
    forms = {"FolderData": FolderData(root), "torchvision ImageFolder": torchvision_folder,
             "DataLoader": DataLoader(torchvision_folder, batch_size=5)}
    for name, data in forms.items():
        # resumes the tensors' state: the streamed fingerprint is the tensors' own
        report = evaluate(_net(), data, registry=reg, state_path=state, keep_state=True, **RUN)
        assert _numbers(report) == _numbers(reference), name
        assert report["data"]["read"] == "streamed", name
    shuffled = evaluate(_net(), DataLoader(torchvision_folder, batch_size=5, shuffle=True), registry=reg, **RUN)
    assert shuffled["data"]["read"].startswith("collected into memory")


def test_resume_is_refused_when_one_pixel_of_one_image_changed(jpeg_tar: Path, tmp_path: Path, reg: Registry) -> None:
    root = _folder(jpeg_tar, tmp_path / "imgs", suffix=".png")  # lossless: one pixel changes, nothing else
    state = tmp_path / "state.pt"
    first = evaluate(_net(), FolderData(root), registry=reg, state_path=state, keep_state=True, **RUN)
    path = root / "automobile" / "0001.png"
    pixels = np.array(Image.open(path))
    pixels[5, 7, 1] = pixels[5, 7, 1] + 1 if pixels[5, 7, 1] < 255 else 254
    Image.fromarray(pixels).save(path)
    with pytest.raises(UserError, match="was written for a different configuration: data differs") as info:
        evaluate(_net(), FolderData(root), registry=reg, state_path=state, keep_state=True, **RUN)
    assert first["data"]["fingerprint"] in str(info.value) and "\n" not in str(info.value)


# --------------------------------------------------------------------------------------------
# memory: bounded by the batch, not by n
# --------------------------------------------------------------------------------------------
SHAPE = (3, 11, 13)  # an image shape nothing else in the run has


def _images_alive() -> int:
    """Images of SHAPE held by live tensors now (each storage counted once, views and all)."""
    storages: dict[int, int] = {}
    for obj in gc.get_objects():
        if issubclass(type(obj), torch.Tensor) and tuple(obj.shape[-3:]) == SHAPE:  # type(): no __class__ lookup
            storage = obj.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes() // (obj.element_size() * int(np.prod(SHAPE)))
    return sum(storages.values())


class _Counted(torch.utils.data.Dataset):
    """Random images made when read; every 30th read counts the images alive in the whole process."""

    def __init__(self, n: int) -> None:
        self.n, self.reads, self.most = n, 0, 0
        self.labels = torch.randint(0, 10, (n,), generator=torch.Generator().manual_seed(0))  # read without images

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        self.reads += 1
        if self.reads % 30 == 0:
            self.most = max(self.most, _images_alive())
        image = torch.rand(SHAPE, generator=torch.Generator().manual_seed(i))
        return image, int(self.labels[i])


def test_the_engine_holds_a_few_batches_not_the_dataset(reg: Registry) -> None:
    n, batch = 400, 20
    data = _Counted(n)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10))
    torch.manual_seed(0)
    report = evaluate(model.eval(), data, ["fgsm", ("pgd", {"steps": 2})], 0.1, registry=reg, progress=False,
                      batch_size=batch, seed=0)
    assert report["n"] == n and report["data"]["read"] == "streamed"
    assert data.reads >= n  # the clean pass read every image
    # the attacks' batches, their adversarial copies and the checks' 64-point subsample: never the 400 images
    # (65 when this was written; 401 when the engine collected the dataset first)
    assert 0 < data.most <= 8 * batch, data.most


# --------------------------------------------------------------------------------------------
# compare: the same streaming as the engine
# --------------------------------------------------------------------------------------------
COMPARE = {"toolkits": ["native", "torchattacks"], "params": {"steps": 2}, "progress": False, "seed": 0,
           "batch_size": 4}


def _compared(report: dict) -> list:
    """What a comparison found (not its seconds or environment)."""
    rows = [(r["toolkit"], r["available"], r["robust_accuracy"], r["broken_samples"], r["max_perturbation"])
            for r in report["results"]]
    return [report["n"], report["clean_accuracy"], rows, report["agreement"], report["noise"],
            report["disagreements"], [(c["name"], c["status"]) for c in report["checks"]]]


def test_compare_on_a_streamed_dataset_gives_the_tensors_report(jpeg_tar: Path, tmp_path: Path, reg: Registry) -> None:
    from torch.utils.data import DataLoader

    from robustreg.compare import compare

    root = _folder(jpeg_tar, tmp_path / "imgs")
    x, y, torchvision_folder = _torchvision_tensors(root)
    reference = compare(_net(), (x, y), "pgd", 0.2, registry=reg, **COMPARE)
    # both rows ran and broke some samples (2 of the 9 when written; eps 0.5 breaks the same 2): not an empty match
    assert all(row["available"] and row["broken_samples"] for row in reference["results"]), reference["results"]
    forms = {"FolderData": FolderData(root), "torchvision ImageFolder": torchvision_folder,
             "DataLoader": DataLoader(torchvision_folder, batch_size=5)}
    for name, data in forms.items():
        report = compare(_net(), data, "pgd", 0.2, registry=reg, **COMPARE)
        assert _compared(report) == _compared(reference), name
        # fingerprinted in compare's clean pass: the tensors' fingerprint, the folder read once for it
        assert report["data"]["fingerprint"] == reference["data"]["fingerprint"] == data_fingerprint(x, y), name


def test_cli_compares_an_imagefolder_and_recognises_its_report(jpeg_tar: Path, tmp_path: Path, capsys) -> None:
    root = _folder(jpeg_tar, tmp_path / "imgs")
    (tmp_path / "net.py").write_text(MODEL)
    out = tmp_path / "cmp"
    args = ["compare", "--model", f"{tmp_path / 'net.py'}:factory", "--data", f"imagefolder:{root}",
            "--resize", "40", "--center-crop", "36", "--attack", "fgsm", "--eps", "8/255",
            "--toolkits", "native,torchattacks", "--batch-size", "4", "--out", str(out), "--quiet"]
    assert main(args) == 0, capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    x, y, _ = _torchvision_tensors(root, 40, 36)
    assert report["n"] == len(y) == len(CLASSES) * PER_CLASS
    # read a batch at a time, the same bytes as torchvision's ImageFolder + Resize(40) + CenterCrop(36) in one
    # tensor: the fingerprint a report of those tensors carries
    assert report["data"]["fingerprint"] == data_fingerprint(x, y)
    assert [r["available"] for r in report["results"]] == [True, True]
    capsys.readouterr()
    assert main(args) == 0
    assert "report already there" in capsys.readouterr().out  # the same data (and configuration) is recognised


def test_compare_holds_a_few_batches_not_the_dataset(reg: Registry) -> None:
    from robustreg.compare import compare

    n, batch = 400, 20
    data = _Counted(n)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10))
    torch.manual_seed(0)
    report = compare(model.eval(), data, "pgd", 0.1, toolkits=["native"], params={"steps": 2}, registry=reg,
                     progress=False, batch_size=batch, seed=0, no_check=["incomplete-optimization"])
    assert report["n"] == n and report["results"][0]["available"], report["results"]
    assert data.reads >= n  # the clean pass read every image
    # the rows' batches (pgd twice: the noise run), their adversarial copies and the checks' subsample: never
    # the 400 images (401 when compare collected the dataset first)
    assert 0 < data.most <= 8 * batch, data.most


# --------------------------------------------------------------------------------------------
# curve (the minimal_norm plugin): the same streaming
# --------------------------------------------------------------------------------------------
CURVE = {"norm": "linf", "params": {"steps": 10}, "verifier": "pgd", "at": (0.05,), "verify_params": {"steps": 2},
         "seed": 0, "batch_size": 4}


def _curve(report: dict) -> list:
    """What a curve found (not its seconds, time or device)."""
    return [report["n"], report["clean_accuracy"], report["norms"], report["curve"], report["verification"]]


def test_curve_on_a_streamed_dataset_gives_the_tensors_report(jpeg_tar: Path, tmp_path: Path, reg: Registry) -> None:
    from robustreg.data.first import first_images
    from robustreg_plugins.minimal_norm.curve import curve_report

    root = _folder(jpeg_tar, tmp_path / "imgs")
    x, y, _ = _torchvision_tensors(root)
    reference = curve_report(_net(), x, y, reg, "fmn", **CURVE)
    assert any(v is not None and v > 0 for v in reference["norms"]), reference["norms"]  # found some: not empty
    images, labels, info = first_images(FolderData(root), None)
    assert info["read"] == "streamed"
    streamed = curve_report(_net(), images, labels, reg, "fmn", **CURVE)
    assert _curve(streamed) == _curve(reference)
    # fingerprinted in the curve's clean pass: the tensors' fingerprint
    assert streamed["data"]["fingerprint"] == reference["data"]["fingerprint"] == data_fingerprint(x, y)
    # with y left out, x is any data evaluate takes: a folder, a DataLoader, a numpy pair
    for data in (FolderData(root), torch.utils.data.DataLoader(FolderData(root), batch_size=4), (x.numpy(), y.numpy())):
        assert _curve(curve_report(_net(), data, None, reg, "fmn", **CURVE)) == _curve(reference), type(data)


def test_cli_curves_an_imagefolder(jpeg_tar: Path, tmp_path: Path, capsys) -> None:
    root = _folder(jpeg_tar, tmp_path / "imgs")
    (tmp_path / "net.py").write_text(MODEL)
    out = tmp_path / "curve"
    args = ["curve", "--model", f"{tmp_path / 'net.py'}:factory", "--data", f"imagefolder:{root}",
            "--resize", "40", "--center-crop", "36", "--attack", "fmn", "--param", "fmn.steps=5",
            "--verify", "pgd", "--at", "0.05", "--param", "pgd.steps=2", "--batch-size", "4", "--out", str(out),
            "--quiet"]
    assert main(args) == 0, capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    x, y, _ = _torchvision_tensors(root, 40, 36)
    assert report["n"] == len(y) and report["data"]["read"] == "streamed"
    assert report["identity"]["data"] == data_fingerprint(x, y)  # read a batch at a time: the tensors' fingerprint
    capsys.readouterr()
    assert main(args) == 0
    assert "report already there" in capsys.readouterr().out


def test_curve_holds_a_few_batches_not_the_dataset(reg: Registry) -> None:
    from robustreg.data.first import first_images
    from robustreg_plugins.minimal_norm.curve import curve_report

    n, batch = 400, 20
    data = _Counted(n)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10))
    torch.manual_seed(0)
    x, y, _ = first_images(data, None)
    report = curve_report(model.eval(), x, y, reg, "fmn", **{**CURVE, "params": {"steps": 3}, "batch_size": batch})
    assert report["n"] == n and len(report["norms"]) == n
    assert data.reads >= n  # the clean pass read every image
    # fmn's and the verifier's batches and their adversarial copies: never the 400 images
    assert 0 < data.most <= 8 * batch, data.most


# --------------------------------------------------------------------------------------------
# train: the same data as the engine, read a batch at a time
# --------------------------------------------------------------------------------------------
def _trained(tmp_path: Path, name: str, data, steps: int = 3) -> dict:
    from robustreg.training import TrainConfig, train

    config = TrainConfig(model="unused", data="unused", defense="standard", iterations=steps, batch_size=10,
                         lr=0.05, augment=False, seed=0, device="cpu", quiet=True, out=str(tmp_path / name))
    final = train(config, model=lambda: nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                                                      nn.Flatten(), nn.Linear(4, 10)), data=data)
    return torch.load(final, weights_only=True)


def test_training_on_a_dataset_or_dataloader_gives_the_tensors_weights(tmp_path: Path) -> None:
    data = _Counted(40)
    x = torch.stack([data[i][0] for i in range(40)])
    y = data.labels.clone()
    want = _trained(tmp_path, "tensors", (x, y))
    for name, given in (("dataset", _Counted(40)), ("loader", torch.utils.data.DataLoader(_Counted(40), batch_size=7)),
                        ("numpy", (x.numpy(), y.numpy()))):
        got = _trained(tmp_path, name, given)
        assert got.keys() == want.keys()
        for key in want:  # the same images in the same order: the same float32 arithmetic, bit for bit
            assert torch.equal(got[key], want[key]), (name, key)


def test_training_holds_a_few_batches_not_the_dataset(tmp_path: Path) -> None:
    data = _Counted(400)
    _trained(tmp_path, "counted", data, steps=60)  # 60 steps of 10 read 600 images: every image at least once
    assert data.reads >= 400
    assert 0 < data.most <= 4 * 10, data.most  # a batch or two, never the 400 images


def test_cli_trains_on_an_imagefolder_at_the_asked_size(jpeg_tar: Path, tmp_path: Path, capsys) -> None:
    root = _folder(jpeg_tar, tmp_path / "imgs")
    (tmp_path / "net.py").write_text(MODEL)
    out = tmp_path / "run"
    code = main(["train", "--model", f"{tmp_path / 'net.py'}:factory", "--data", f"imagefolder:{root}",
                 "--resize", "40", "--center-crop", "36", "--iterations", "2", "--batch-size", "4", "--seed", "0",
                 "--no-augment", "--device", "cpu", "--out", str(out), "--quiet"])
    assert code == 0, capsys.readouterr().err
    assert (out / "final.pt").is_file()
    saved = torch.load(out / "last.pt", weights_only=True)
    assert saved["config"]["resize"] == 40 and saved["config"]["center_crop"] == 36
    # the size is part of the run: resuming the folder at another size is refused, naming the key
    code = main(["train", "--model", f"{tmp_path / 'net.py'}:factory", "--data", f"imagefolder:{root}",
                 "--resize", "44", "--center-crop", "36", "--iterations", "2", "--batch-size", "4", "--seed", "0",
                 "--no-augment", "--device", "cpu", "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "resize: 40 in the checkpoint, 44 now" in err, err


def test_cli_train_resize_elsewhere_is_one_line(tmp_path: Path, capsys) -> None:
    code = main(["train", "--model", "digits-cnn", "--data", "digits", "--resize", "32", "--iterations", "1",
                 "--out", str(tmp_path / "run"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "--resize applies to --data imagefolder:DIR only, got --data 'digits'" in err
