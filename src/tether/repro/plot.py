"""``--plot FILE.png``: what a reviewer would rather look at than read (Matplotlib, Agg backend).

Three panels: the two runs' per-case score distributions, the paired per-case differences, and
the confidence intervals of the mean difference against the equivalence margin.
"""

from __future__ import annotations

from pathlib import Path

from tether.components.textdiff import plural
from tether.errors import UsageError
from tether.repro.compare import ComparisonReport

FORMATS = (".png", ".svg", ".pdf")


def check_plot_path(path: str) -> Path:
    """Refuse a plot path tether cannot write before any work is done."""
    target = Path(path)
    if target.suffix.lower() not in FORMATS:
        raise UsageError(f"--plot {path}: expected a file ending in {', '.join(FORMATS)}")
    if not target.parent.is_dir():
        raise UsageError(f"--plot {path}: folder {target.parent} does not exist")
    return target


def plot_comparison(report: ComparisonReport, path: str, label_a: str = "A", label_b: str = "B") -> Path:
    """Draw the report into ``path`` and return it."""
    target = check_plot_path(path)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    a = np.asarray(report.scores_a, dtype=float)
    b = np.asarray(report.scores_b, dtype=float)
    d = b - a
    behavioral = report.behavioral
    figure, (left, middle, right) = plt.subplots(1, 3, figsize=(15, 4.5))
    figure.suptitle(f"{behavioral.verdict}  ·  eval set '{report.evalset}', {plural(len(a), 'case')}  ·  "
                    f"bitwise {report.bitwise['share']:.0%}", fontsize=12)

    bins = np.linspace(0, 1, 12)
    left.hist([a, b], bins=bins, label=[f"{label_a} {report.run_a['run_id'][:8]} (mean {a.mean():.3f})",
                                        f"{label_b} {report.run_b['run_id'][:8]} (mean {b.mean():.3f})"],
              color=["#4C72B0", "#DD8452"])
    left.set_title("per-case score distributions")
    left.set_xlabel("score (mean over repeats)")
    left.set_ylabel("cases")
    left.legend(fontsize=8)

    span = max(float(np.abs(d).max()), behavioral.margin * 2, 0.05)
    middle.hist(d, bins=np.linspace(-span, span, 26), color="#55A868")
    middle.axvline(0, color="black", linewidth=0.8)
    middle.axvline(float(d.mean()), color="#C44E52", linestyle="--", label=f"mean {d.mean():+.4f}")
    middle.set_title(f"paired differences ({label_b} - {label_a})")
    middle.set_xlabel("score difference per case")
    middle.set_ylabel("cases")
    middle.legend(fontsize=8)

    margin = behavioral.margin
    right.axvspan(-margin, margin, color="#8FBC8F", alpha=0.3, label=f"margin ±{margin:g}")
    right.axvline(0, color="black", linewidth=0.8)
    low95, high95 = behavioral.ci95
    low90, high90 = behavioral.tost_interval
    right.plot([low95, high95], [1, 1], color="#4C72B0", linewidth=3, label="95% CI (bootstrap)")
    right.plot([low90, high90], [0.6, 0.6], color="#DD8452", linewidth=3, label=f"{1 - 2 * behavioral.alpha:.0%} CI (TOST)")
    right.plot([behavioral.difference] * 2, [0.6, 1], "o", color="#C44E52", label=f"difference {behavioral.difference:+.4f}")
    reach = max(abs(low95), abs(high95), abs(low90), abs(high90), margin) * 1.3
    right.set_xlim(-reach, reach)
    right.set_ylim(0, 1.6)
    right.set_yticks([])
    right.set_title("mean difference against the margin")
    right.set_xlabel(f"{label_b} - {label_a}")
    right.legend(fontsize=8, loc="upper right")

    figure.tight_layout()
    try:
        figure.savefig(target, dpi=110)
    except OSError as exc:
        raise UsageError(f"--plot {path}: cannot write ({exc.strerror or exc})") from exc
    finally:
        plt.close(figure)
    return target
