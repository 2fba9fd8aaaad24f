"""The papers' numbers every reproduction prints beside its own: one table, each entry naming its source.

Papers: 000 = Na et al. 2018, cascade adversarial training (arXiv:1708.02582); 004 = Xu et al. 2022,
scale-invariant attack and defense (arXiv:2201.12527).  Values are copied from the papers' tables as
printed (accuracy in %, ADBD as a fraction of the [0, 1] range); :data:`PAPER` maps a key to a
:class:`PaperTable` whose ``source`` names the paper, table and setting.  A script takes its rows from
here and :func:`paper_section` renders them with that source.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from _report import markdown_table  # _report puts benchmarks/ (its _common) on sys.path

__all__ = ["PAPER", "PaperTable", "paper_section"]


@dataclass(frozen=True)
class PaperTable:
    """``rows``: row label -> the values of ``columns``; ``source``: paper, table / figure, setting."""

    source: str
    columns: tuple[str, ...]
    rows: dict[str, Any]


PAPER: dict[str, PaperTable] = {
    "004-table5": PaperTable(
        "paper 004 Table 5 (single run of each attack, CIFAR-10, L_inf 8/255, 20 steps), %",
        ("natural", "PGD", "PGDCW", "PGDLR", "SI-PGD"),
        {"AT RN-50": (85.46, 56.64, 54.95, 57.47, 54.65),
         "TRADES W-34-10": (84.92, 57.16, 55.45, 57.15, 55.27),
         "Pre-training W-28-10": (87.11, 59.60, 58.27, 60.39, 57.09),
         "RST W-28-10": (89.69, 65.05, 63.09, 64.73, 62.34),
         "MART RN-18": (83.07, 55.41, 51.50, 53.42, 51.32),
         "MART W-28-10": (87.50, 64.77, 61.04, 62.65, 60.60),
         "HYDRA W-28-10": (88.98, 62.84, 60.54, 62.41, 60.13)}),
    "004-table5-restarts": PaperTable(
        "paper 004 Table 5, right half: worst case per image over 5 random restarts of each attack (effective "
        "budget 5 x 20 iterations; CIFAR-10, L_inf 8/255), %",
        ("PGD", "PGDCW", "PGDLR", "SI-PGD"),
        {"AT RN-50": (56.10, 54.47, 56.95, 54.41),
         "TRADES W-34-10": (56.84, 55.20, 56.79, 55.02),
         "Pre-training W-28-10": (59.19, 57.83, 59.95, 56.95),
         "RST W-28-10": (64.52, 62.74, 64.33, 62.18),
         "MART RN-18": (55.06, 51.08, 52.79, 50.95),
         "MART W-28-10": (64.31, 60.47, 62.04, 60.32),
         "HYDRA W-28-10": (62.34, 60.23, 61.89, 59.93)}),
    "004-table6": PaperTable(
        "paper 004 Table 6 (ResNet-18, CIFAR-10, L_inf 8/255), %",
        ("natural", "PGD", "PGDCW", "SI-PGD", "AA"),
        {"at": (85.57, 54.12, 53.15, 52.47, 48.49), "at-si": (83.03, 55.76, 52.93, 52.89, 48.15),
         "trades": (84.15, 55.23, 52.67, 52.24, 50.06), "trades-si": (84.05, 58.73, 53.56, 54.77, 50.60),
         "alp": (84.25, 56.11, 53.26, 53.06, 50.30), "alp-si": (85.70, 57.64, 53.06, 52.66, 49.30),
         "mart": (80.99, 57.11, 52.38, 52.27, 48.71), "mart-si": (81.46, 61.02, 52.49, 53.90, 49.09)}),
    "004-table9": PaperTable(
        "paper 004 Table 9 (black-box, ResNet-18, CIFAR-10, L_inf 8/255): SPSA accuracy % at batch 128 / 256 / "
        "512, RayS ADBD and robust accuracy %",
        ("SPSA 128", "SPSA 256", "SPSA 512", "RayS ADBD", "RayS Rob.Acc"),
        {"at": (59.81, 57.85, 56.00, 0.0370, 53.91), "at-si": (60.51, 58.29, 56.40, 0.0373, 54.43),
         "trades": (59.67, 57.67, 55.97, 0.0393, 54.95), "trades-si": (60.35, 58.38, 56.71, 0.0394, 54.25),
         "alp": (60.48, 58.27, 56.55, 0.0388, 54.79), "alp-si": (61.02, 58.62, 56.65, 0.0386, 55.39),
         "mart": (58.16, 56.20, 54.91, 0.0376, 53.42), "mart-si": (59.16, 56.90, 55.23, 0.0380, 53.88)}),
    "000-table1": PaperTable(
        "paper 000 Table 1 (MNIST test set; clean, then step_ll, step_FGSM, iter_ll, iter_FGSM at eps 16 and 32 "
        "of 255; training with step_ll), %",
        ("clean", "step-ll@16", "step-ll@32", "step-fgsm@16", "step-fgsm@32", "iter-ll@16", "iter-ll@32",
         "iter-fgsm@16", "iter-fgsm@32"),
        {"standard": (99.6, 95.7, 30.2, 92.6, 29.7, 98.1, 66.2, 86.6, 7.5),
         "kurakin": (99.6, 99.2, 96.7, 98.5, 94.1, 99.5, 97.9, 98.2, 87.9),
         "bidirectional": (99.5, 99.3, 98.8, 99.1, 98.4, 99.4, 99.1, 98.9, 96.5),
         "pivot": (99.6, 99.4, 98.8, 99.1, 98.1, 99.5, 99.3, 98.8, 96.4)}),
    "000-table4": PaperTable(
        "paper 000 Table 4 (black-box transfer, CIFAR-10, eps 16 of 255; targets B1 K1 P1 (rows) x sources B2 K2 "
        "P2 (columns), per attack), %",
        ("B2", "K2", "P2"),
        {"step-fgsm": ((16.2, 31.6, 29.1), (66.7, 82.7, 79.4), (57.2, 89.2, 85.4)),
         "iter-ll": ((69.7, 82.6, 78.3), (87.7, 83.5, 82.5), (87.8, 83.3, 82.3)),
         "iter-fgsm": ((2.7, 60.1, 54.4), (55.8, 28.5, 28.5), (52.0, 24.3, 21.7))}),
    "000-table5": PaperTable(
        "paper 000 Table 5 (ResNet-20, CIFAR-10, white-box; P: pivot trained with step_ll; P_C / K_C: pivot / "
        "Kurakin's trained with step_ll + stored iter_FGSM of P2; each attack at eps 2, 4, 8, 16 of 255), %",
        ("clean", "step-ll", "step-fgsm", "iter-ll", "iter-fgsm"),
        {"P": {"clean": 90.9, "step-ll": (86.2, 88.0, 89.0, 88.3), "step-fgsm": (79.7, 84.8, 90.0, 91.7),
               "iter-ll": (76.3, 69.4, 41.3, 22.2), "iter-fgsm": (52.0, 11.3, 0.2, 0.0)},
         "P_C": {"clean": 90.7, "step-ll": (84.6, 82.8, 79.4, 73.9), "step-fgsm": (80.5, 77.6, 72.7, 65.7),
                 "iter-ll": (82.2, 75.8, 67.1, 58.7), "iter-fgsm": (67.0, 37.9, 20.1, 9.7)},
         "K_C": {"clean": 91.3, "step-ll": (85.3, 83.6, 80.7, 73.8), "step-fgsm": (80.2, 79.1, 75.4, 67.6),
                 "iter-ll": (81.4, 69.0, 41.3, 19.2), "iter-fgsm": (60.7, 18.9, 1.7, 0.1)}}),
    "000-table8-9": PaperTable(
        "paper 000 Appendix B Table 8 (targets B1 K1 P1, same initialisation as the sources) and Table 9 (targets "
        "B2 K2 P2, the other initialisation), sources B1 K1 P1, CIFAR-10, ResNet-20, eps 16 of 255, %",
        ("B1", "K1", "P1"),
        {"T8 B1 step-fgsm": (12.2, 27.4, 27.5), "T8 K1 step-fgsm": (65.7, 81.5, 81.8),
         "T8 P1 step-fgsm": (58.1, 89.3, 91.7), "T8 B1 iter-ll": (9.3, 78.6, 80.7),
         "T8 K1 iter-ll": (87.7, 16.8, 81.8), "T8 P1 iter-ll": (88.1, 81.9, 22.3),
         "T8 B1 iter-fgsm": (0.0, 45.9, 44.7), "T8 K1 iter-fgsm": (51.5, 0.0, 18.2),
         "T8 P1 iter-fgsm": (48.9, 13.4, 0.0),
         "T9 B2 step-fgsm": (17.9, 33.9, 34.5), "T9 K2 step-fgsm": (65.0, 84.6, 84.5),
         "T9 P2 step-fgsm": (66.4, 88.2, 87.2), "T9 B2 iter-ll": (73.9, 82.2, 82.8),
         "T9 K2 iter-ll": (87.6, 81.5, 82.3), "T9 P2 iter-ll": (88.3, 83.5, 83.9),
         "T9 B2 iter-fgsm": (4.1, 54.8, 54.3), "T9 K2 iter-fgsm": (61.2, 25.3, 30.4),
         "T9 P2 iter-fgsm": (61.6, 27.7, 36.1)}),
    "000-table2-leak": PaperTable(
        "paper 000 Table 2 (CIFAR-10, ResNet-20, trained with step_ll; step_FGSM attack at eps 2, 4, 8, 16 of 255 "
        "beside clean: label leaking where it exceeds clean), %",
        ("clean", "step-fgsm@2", "step-fgsm@4", "step-fgsm@8", "step-fgsm@16"),
        {"Baseline": (90.9, 28.7, 20.6, 15.7, 12.2), "Kurakin's": (91.0, 78.9, 83.3, 85.2, 81.5),
         "Bidirection": (91.0, 78.7, 82.8, 88.0, 90.0), "Pivot": (90.9, 79.7, 84.8, 90.0, 91.7)}),
    "004-table10": PaperTable(
        "paper 004 Table 10 (TRADES with HE or SI, ResNet-18, L_inf 8/255), %",
        ("PGD", "PGDCW", "SI-PGD", "AA"),
        {"CIFAR-10 TRADES": (55.23, 52.67, 52.24, 50.06), "CIFAR-10 TRADES-HE": (61.45, 52.08, 51.57, 49.86),
         "CIFAR-10 TRADES-SI": (58.73, 53.56, 54.77, 50.60),
         "SVHN TRADES": (61.28, 57.39, 56.90, 50.82), "SVHN TRADES-HE": (67.32, 56.55, 57.53, 51.90),
         "SVHN TRADES-SI": (62.68, 57.93, 58.87, 52.13),
         "CIFAR-100 TRADES": (31.39, 27.10, 26.68, 25.04), "CIFAR-100 TRADES-HE": (31.70, 25.51, 29.34, 23.93),
         "CIFAR-100 TRADES-SI": (33.54, 28.19, 29.66, 25.86)}),
    "004-table8": PaperTable(
        "paper 004 Table 8 (single-step defenses, CIFAR-10, L_inf 8/255; free-at, gat on ResNet-18, rfgsm-at, "
        "grad-align on PreActResNet-18; the GAT and RFGSM-AT rows are garbled in the text extraction and read here "
        "in the table's column order), %",
        ("natural", "PGD", "PGDCW", "SI-PGD"),
        {"free-at": (84.45, 47.69, 47.14, 47.31), "free-at-si": (84.22, 48.37, 46.97, 46.56),
         "gat": (80.49, 54.47, 50.47, 51.89), "gat-si": (83.42, 56.01, 51.83, 52.13),
         "rfgsm-at": (83.80, 49.41, 48.92, 48.85), "rfgsm-at-si": (82.85, 50.75, 49.69, 49.42),
         "grad-align": (80.14, 49.42, 48.23, 48.12), "grad-align-si": (82.58, 50.51, 49.64, 49.35)}),
    "004-tables2-4": PaperTable(
        "paper 004 Tables 2 (scale s, m 0.2), 3 (margin m, s 15) and 4 (beta; m 0.2, s 15): TRADES-SI, ResNet-18, "
        "CIFAR-10, L_inf 8/255 (rows quoted: TRADES, the default, and the settings nearest ours), %",
        ("natural", "PGD", "PGDCW", "SI-PGD", "AA"),
        {"TRADES": (84.15, 55.23, 52.67, 52.24, 50.06),
         "TRADES-SI s 15, m 0.2, beta 0.2 (default)": (84.05, 58.73, 53.56, 54.77, 50.60),
         "Table 2: s 60": (82.12, 57.38, 52.20, 58.47, 49.06), "Table 2: s 10": (83.75, 58.03, 53.21, 53.34, 50.05),
         "Table 3: m 0": (82.95, 58.01, 52.86, 54.73, 50.11), "Table 3: m 0.1": (83.10, 58.46, 52.98, 54.28, 50.17),
         "Table 3: m 0.3": (83.62, 57.82, 53.20, 53.89, 50.00), "Table 3: m 0.4": (83.49, 57.78, 53.16, 54.12, 50.17),
         "Table 3: m 0.5": (82.72, 57.58, 53.19, 54.15, 50.13), "Table 3: m 0.6": (83.37, 57.35, 52.71, 53.53, 49.36),
         "Table 4: beta 0": (81.58, 59.59, 52.67, 52.95, 49.59),
         "Table 4: beta 0.6": (84.29, 57.95, 53.27, 54.26, 50.08)}),
    "000-table3": PaperTable(
        "paper 000 Table 3 (20 trainings each, ResNet-20, CIFAR-10, step_ll training; mean +- std), %",
        ("clean", "step-ll@4", "step-ll@16", "iter-ll@4", "iter-ll@16"),
        {"Kurakin's": ("90.9 +- 0.25", "86.1 +- 0.98", "84.6 +- 2.89", "64.2 +- 2.89", "16.3 +- 2.02"),
         "Pivot": ("90.9 +- 0.25", "87.3 +- 0.79", "87.8 +- 0.82", "69.4 +- 1.61", "21.9 +- 1.85")}),
    "000-fig3": PaperTable(
        "paper 000 sec. 3.4 and Fig. 3 (step_ll, Pivot, CIFAR-10, various lambda2): the figure's curves are not "
        "printed as numbers; its text",
        ("statement",),
        {"clean": ("a higher lambda2 reduces accuracy of the clean images; above 0.3 training diverges",),
         "iterative": ("as lambda2 increases, accuracy of the iteratively generated adversarial images increases",)}),
    "004-figs3-5": PaperTable(
        "paper 004 sec. 5.4.3 and Figs. 3-5 (ResNet-18, CIFAR-10, L_inf 8/255): plots without printed numbers; "
        "the statements of its text",
        ("statement",),
        {"Fig. 3 (AT-SI)": ("the loss surfaces around x + d1 v + d2 r (v: PGD-10) are smooth: no gradient "
                            "obfuscation",),
         "Fig. 4 (TRADES vs TRADES-SI)": ("the weight loss surface of TRADES-SI is flatter than TRADES's",),
         "Fig. 5 (TRADES vs TRADES-SI)": ("cos theta of TRADES-SI on PGD-10 examples has larger values than "
                                          "TRADES's",)}),
}


def paper_section(key: str, rows: list[list[Any]] | None = None, head: list[str] | None = None) -> str:
    """``## Paper`` with the table's source and its rows (or the caller's ``rows`` under ``head``)."""
    table = PAPER[key]
    if rows is None:
        rows = [[label, *values] for label, values in table.rows.items()]
        head = ["", *table.columns]
    return f"## Paper: {table.source}\n\n" + markdown_table(head or ["", *table.columns], rows)
