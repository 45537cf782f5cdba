"""A class's results: the gradebook (CSV), a summary (Markdown) and two plots.

``gradebook.csv``: one row per student: the points of each unit (notebook order), each written
question (from manual_scores.csv; empty until a TA scores it), and the total. ``summary.md``: the
spread of totals and, per unit, the share of students with full marks, so the exercises the class
failed stand out; ``score_histogram.png`` and ``unit_pass_rate.png`` show the same. Where the
reports carry Gradescope leaderboard entries (the final project, ``autograder/challenge/report_extras.py``),
the gradebook has one column per entry (AP hard, medium, easy, images/s, parameters) and the
summary a leaderboard table, ranked by the first entry, and ``leaderboard_pr_curves.png``: the
precision-recall curves (hard setting) of the ``PR_CURVES`` best students, from the reports' ``curves``.
"""
from __future__ import annotations

import csv
import statistics
from pathlib import Path

HISTOGRAM_BINS = 20
PR_CURVES = 10              # students drawn in the leaderboard's precision-recall figure
PR_SETTING = "hard"


def gradebook(path: Path, reports: dict[str, dict], units: list[str], written: list[str],
              manual: dict[str, dict[str, float]]) -> list[dict]:
    """Write ``path``; returns its rows. ``reports``: {student: report dict (engine.Report)}."""
    rows = []
    for student, report in sorted(reports.items()):
        scores = unit_scores(report)
        row = {"student": student}
        row.update({u: f"{scores[u][0]:g}" if u in scores else "" for u in units})
        row.update({q: f"{manual.get(student, {})[q]:g}" if q in manual.get(student, {}) else ""
                    for q in written})
        total = sum(s for s, _ in scores.values()) + sum(manual.get(student, {}).values())
        row["total"] = f"{total:g}"
        row.update({name: f"{value:g}" if isinstance(value, (int, float)) else str(value)
                    for name, value in board_values(report).items()})
        row["status"] = report.get("status", "graded")
        row["review"] = str(len(report.get("review") or []))
        rows.append(row)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, ["student", *units, *written, "total", *leaderboard_columns(reports),
                                    "status", "review"], restval="")
        writer.writeheader()
        writer.writerows(rows)
    return rows


def board_values(report: dict) -> dict:
    """{entry name: value} of a report's leaderboard (empty without one)."""
    return {e["name"]: e.get("value") for e in report.get("leaderboard") or [] if isinstance(e, dict) and "name" in e}


def leaderboard_columns(reports: dict[str, dict]) -> list[str]:
    """The leaderboard entry names of the class, in the order the reports give them."""
    names: list[str] = []
    for report in reports.values():
        names += [n for n in board_values(report) if n not in names]
    return names


def leaderboard_lines(reports: dict[str, dict]) -> list[str]:
    """A Markdown leaderboard of the graded students, best first by the first entry (its order)."""
    columns = leaderboard_columns(reports)
    if not columns:
        return []
    lines = ["## Leaderboard", "", "| rank | student | " + " | ".join(columns) + " |",
             "|---|---|" + "---|" * len(columns)]
    for rank, student in enumerate(ranked(reports), 1):
        values = board_values(reports[student])
        cells = [f"{values[c]:g}" if isinstance(values.get(c), (int, float)) else str(values.get(c, ""))
                 for c in columns]
        lines.append(f"| {rank} | {student} | " + " | ".join(cells) + " |")
    return lines + [""]


def ranked(reports: dict[str, dict]) -> list[str]:
    """The students with a leaderboard, best first by its first entry (its order)."""
    columns = leaderboard_columns(reports)
    if not columns:
        return []
    first = next(e for r in reports.values() for e in r.get("leaderboard") or [] if e.get("name") == columns[0])
    sign = -1 if first.get("order", "desc") == "desc" else 1
    board = {s: board_values(r) for s, r in reports.items() if r.get("leaderboard")}

    def key(student):
        value = board[student].get(columns[0])
        return (0, sign * value) if isinstance(value, (int, float)) else (1, 0)
    return sorted(board, key=key)


def leaderboard_curves(out: Path, reports: dict[str, dict]) -> Path | None:
    """``leaderboard_pr_curves.png``: the ``PR_SETTING`` precision-recall curves of the ``PR_CURVES``
    best students that have curves; None when none has."""
    drawn = [(s, reports[s]["curves"][PR_SETTING]) for s in ranked(reports)
             if isinstance(reports[s].get("curves"), dict) and PR_SETTING in reports[s]["curves"]][:PR_CURVES]
    if not drawn:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for student, curve in drawn:
        ap = board_values(reports[student]).get(f"AP {PR_SETTING}")
        ax.plot(curve["recall"], curve["precision"], label=f"{student}" + (f" ({ap:.3f})" if ap is not None else ""))
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(f"Leaderboard: precision-recall ({PR_SETTING})")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    path = out / "leaderboard_pr_curves.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def unit_scores(report: dict) -> dict[str, tuple[float, float]]:
    out: dict[str, list[float]] = {}
    for c in report.get("checks", []):
        if c["kind"] != "skipped":
            s = out.setdefault(c["unit"], [0.0, 0.0])
            s[0] += c["score"]
            s[1] += c["points"]
    return {u: (s[0], s[1]) for u, s in out.items()}


def pass_rates(reports: dict[str, dict], units: list[str]) -> dict[str, float]:
    """{unit: share of the graded students with full marks on it}."""
    graded = [unit_scores(r) for r in reports.values() if r.get("status", "graded") == "graded"]
    return {u: (sum(1 for s in graded if u in s and s[u][0] >= s[u][1] > 0) / len(graded) if graded else 0.0)
            for u in units}


def summary(out: Path, rows: list[dict], reports: dict[str, dict], units: list[str], max_auto: float,
            failed: dict[str, list[str]]) -> Path:
    """Write ``summary.md`` and the two plots into ``out``; ``failed``: {status: students}."""
    totals = [float(r["total"]) for r in rows]
    rates = pass_rates(reports, units)
    lines = [f"# Class summary ({len(rows)} students)", ""]
    try:
        _plots(out, totals, rates, max_auto)
    except ImportError as err:  # the gradebook matters more than the pictures
        lines += [f"(plots not drawn: {err})", ""]
    if totals:
        lines += [f"Total (autograded, plus written answers scored so far): mean {statistics.mean(totals):.1f}, "
                  f"median {statistics.median(totals):g}, min {min(totals):g}, max {max(totals):g}; "
                  f"autograded maximum {max_auto:g}.", ""]
    lines += ["| unit | students with full marks |", "|---|---|"]
    lines += [f"| {u} | {rates[u]:.0%} |" for u in sorted(units, key=lambda u: rates[u])]
    board = leaderboard_lines(reports)
    if board:
        lines += [""] + board
        try:
            if leaderboard_curves(out, reports):
                lines += [f"![precision-recall, {PR_SETTING}](leaderboard_pr_curves.png)", ""]
        except ImportError as err:
            lines += [f"(precision-recall figure not drawn: {err})", ""]
    for status, who in sorted(failed.items()):
        lines += ["", f"Not graded ({status}; scored 0, look at them by hand): " + ", ".join(who)]
    flagged = {s: r["review"] for s, r in sorted(reports.items()) if r.get("review")}
    if flagged:
        lines += ["", "## To review by hand", "",
                  "Answer cells that reach into library or interpreter internals (the grader's watch, "
                  "frames, the garbage collector, private library functions), and final-project uploads "
                  "fine-tuned from published weights. No points were taken for this.", ""]
        lines += [f"- {student}: {item}" for student, items in flagged.items() for item in items]
    lines += ["", "![scores](score_histogram.png) ![units](unit_pass_rate.png)"]
    path = out / "summary.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _plots(out: Path, totals: list[float], rates: dict[str, float], max_auto: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.hist(totals, bins=HISTOGRAM_BINS, range=(0, max(max_auto, max(totals, default=0)) or 1),
            color="#4c72b0")
    ax.set_xlabel("total points")
    ax.set_ylabel("students")
    ax.set_title("Scores")
    fig.tight_layout()
    fig.savefig(out / "score_histogram.png", dpi=100)
    plt.close(fig)
    units = list(rates)
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(units) + 1.2))
    ax.barh(units, [100 * rates[u] for u in units], color="#55a868")
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("students with full marks (%)")
    ax.set_title("Pass rate per unit")
    fig.tight_layout()
    fig.savefig(out / "unit_pass_rate.png", dpi=100)
    plt.close(fig)
