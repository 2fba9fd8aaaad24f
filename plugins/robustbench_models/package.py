"""The real robustbench (1.1.1) model zoo, imported without robustbench's ``__init__``.

Why not ``import robustbench``: its ``__init__`` imports ``robustbench.eval`` (``from autoattack import
...``: pyautoattack installs ``pyautoattack``, not ``autoattack``) and ``robustbench.data`` -> ``loaders``
(``pkg_resources``, gone in setuptools 81); and torchattacks 3.5.1 installs an older ``robustbench/``
folder of its own (no dist-info), so in some environments ``import robustbench`` finds that copy.

How: the files are those the ``robustbench`` *distribution* records (``importlib.metadata``, which the
bundled copy has none of), checked against the hashes in its RECORD (torchattacks may have written its
older files over them); an empty package ``robustbench`` whose ``__path__`` is that folder is put in
``sys.modules`` only while the zoo is imported or a model built (:func:`real_robustbench`), so the zoo's
absolute ``robustbench.model_zoo...`` imports resolve without running ``__init__``; afterwards
``sys.modules`` holds again whatever ``robustbench`` it held before.  Nothing outside the process changes.
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import importlib.machinery
import importlib.util
import sys
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

import robustreg

__all__ = ["INSTALL", "SUPPORTED", "Zoo", "real_robustbench"]

SUPPORTED = "1.1.1"
INSTALL = "pip install 'robustreg[robustbench]'"
_REINSTALL = f"pip install --force-reinstall --no-deps robustbench=={SUPPORTED}"
_LOCK = threading.RLock()  # sys.modules is swapped while the zoo is in use: one user at a time


@dataclass
class Zoo:
    """The zoo's tables: ``models[BenchmarkDataset][ThreatModel][name] = {"model": factory, "gdrive_id": ...}``."""

    models: Any
    dataset: Any  # robustbench.model_zoo.enums.BenchmarkDataset
    threat: Any  # robustbench.model_zoo.enums.ThreatModel
    modules: dict[str, ModuleType]  # robustbench.* as imported from the distribution's files


_ZOO: list[Zoo] = []  # the one import of this process (a list: no module-level rebinding)


def _is_ours(name: str) -> bool:
    return name == "robustbench" or name.startswith("robustbench.")


def _distribution() -> metadata.Distribution:
    try:
        dist = metadata.distribution("robustbench")
    except metadata.PackageNotFoundError:
        raise robustreg.MissingPackageError(f"robustbench: needs the robustbench package ({SUPPORTED}), which is "
                                            f"not installed: {INSTALL}") from None
    if dist.version != SUPPORTED:
        raise robustreg.MissingPackageError(f"robustbench: supports robustbench {SUPPORTED}, found "
                                            f"{dist.version}: pip install 'robustbench=={SUPPORTED}'")
    return dist


def _sha256(path: Path) -> str:
    digest = hashlib.sha256(path.read_bytes()).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _verified_root(dist: metadata.Distribution) -> Path:
    """The distribution's ``robustbench/`` folder, once every zoo file matches its RECORD hash."""
    changed = []
    for file in dist.files or []:
        if not (file.as_posix().startswith("robustbench/model_zoo/") and file.suffix == ".py" and file.hash):
            continue
        path = Path(str(dist.locate_file(file)))
        if not path.is_file() or _sha256(path) != f"{file.hash.mode}={file.hash.value}":
            changed.append(file.as_posix())
    root = Path(str(dist.locate_file("robustbench")))
    if changed:
        raise robustreg.UserError(
            f"robustbench: {len(changed)} of robustbench {SUPPORTED}'s files in {root} are not the ones it "
            f"installed (e.g. {changed[0]}; torchattacks 3.5.1 writes an older robustbench/ folder to the same "
            f"place): {_REINSTALL}")
    return root


def _import_zoo() -> Zoo:
    root = _verified_root(_distribution())
    spec = importlib.machinery.ModuleSpec("robustbench", None, is_package=True)
    spec.submodule_search_locations = [str(root)]
    package = importlib.util.module_from_spec(spec)  # its __init__.py is never executed
    package.__file__ = str(root / "__init__.py")
    sys.modules["robustbench"] = package
    try:
        with warnings.catch_warnings():
            # robustbench's own modules use timm's deprecated import paths and re-register timm names: its
            # warnings, nothing the user can act on
            warnings.simplefilter("ignore")
            zoo = importlib.import_module("robustbench.model_zoo")
        enums = importlib.import_module("robustbench.model_zoo.enums")
    except ModuleNotFoundError as exc:
        raise robustreg.MissingPackageError(f"robustbench: robustbench {SUPPORTED}'s model zoo imports "
                                            f"{exc.name}, which is not installed: {INSTALL}") from exc
    modules = {name: module for name, module in sys.modules.items() if _is_ours(name)}
    return Zoo(zoo.model_dicts, enums.BenchmarkDataset, enums.ThreatModel, modules)


@contextmanager
def real_robustbench() -> Iterator[Zoo]:
    """The real zoo, with ``robustbench`` in ``sys.modules`` meaning it until the block ends.

    Inside the block ``importlib.import_module("robustbench.utils")`` is robustbench's own module too (tests
    compare with its ``load_model``); what the block imports is kept for the next one."""
    with _LOCK:
        saved = {name: sys.modules.pop(name) for name in [n for n in sys.modules if _is_ours(n)]}
        try:
            if _ZOO:
                sys.modules.update(_ZOO[0].modules)
            else:
                _ZOO.append(_import_zoo())
            yield _ZOO[0]
        finally:
            ours = {name: sys.modules.pop(name) for name in [n for n in sys.modules if _is_ours(n)]}
            if _ZOO:
                _ZOO[0].modules.update(ours)
            sys.modules.update(saved)
