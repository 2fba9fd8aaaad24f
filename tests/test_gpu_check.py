"""benchmarks/gpu_check.py: its --smoke sizes run on the CPU through every section and print one table."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture()
def gpu_check(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import gpu_check as module

    yield module
    for name in ("gpu_check", "speed_options"):
        sys.modules.pop(name, None)


def _table(text: str) -> list[list[str]]:
    lines = [line for line in text.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]  # after header, rule


def test_smoke_runs_every_section_on_the_cpu(gpu_check, models_dir, cifar_npz, tmp_path, capsys):
    out = tmp_path / "gpu_check.md"
    status = gpu_check.main(["--smoke", "--device", "cpu", "--out", str(out)])
    printed = capsys.readouterr().out
    rows = _table(printed)
    assert status == 0, printed
    assert {row[0] for row in rows} == set(gpu_check.SECTIONS)
    assert not [row for row in rows if row[1] == "FAILED" or row[2] == "FAIL"], printed
    what = {row[0]: [r[1] for r in rows if r[0] == row[0]] for row in rows}
    assert [w for w in what["conformance"] if w in gpu_check.SMOKE.attacks] == list(gpu_check.SMOKE.attacks)
    assert {"fp32 robustreg pgd", "bf16 robustreg pgd"} <= set(what["attack-speed"])
    assert any(w.startswith("pgd-2 compile (aot_eager)") for w in what["options"])
    assert len(what["blackbox"]) == 2 and len(what["training"]) == 2
    aa = next(row for row in rows if row[0] == "autoattack" and "robust accuracy" in row[1])
    assert aa[2].startswith("robustreg ") and aa[3].startswith("direct ")
    written = out.read_text()
    assert written.startswith("# GPU check") and "device cpu (--smoke sizes)" in written
    assert _table(written) == rows


def test_without_cuda_it_says_so_and_runs_nothing(gpu_check, capsys):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here: the full check would run")
    assert gpu_check.main(["--device", "auto"]) == 0
    assert "no CUDA device here" in capsys.readouterr().out


def test_an_unknown_section_is_one_line(gpu_check, capsys):
    with pytest.raises(SystemExit) as info:
        gpu_check.main(["--smoke", "--device", "cpu", "--skip", "nope"])
    assert info.value.code == 2
    assert "--skip: unknown section(s) nope; sections: conformance" in capsys.readouterr().err
