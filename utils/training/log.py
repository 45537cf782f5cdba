"""What a training run reports: a CSV row per iteration and a progress display.

CSV columns: ``iteration, epoch, lr, images_per_s, loss, <loss parts...>`` (iteration and epoch
count from 1; ``loss`` is the sum of the parts; ``images_per_s`` counts all processes). It is the
file ``utils.viz.plot_loss_curves`` reads. Each row is flushed as it is written, so a killed run
keeps its log; a resumed run first cuts the rows past its checkpoint's iteration.

Progress: a tqdm bar on a terminal; where stderr is not a terminal (CI, files) the bar is off and
one text line is printed every ``log_every`` iterations instead.
"""
from __future__ import annotations

import csv
import math
import os
import sys
from pathlib import Path

from tqdm import tqdm

BOOKKEEPING_COLUMNS = ("iteration", "epoch", "lr", "images_per_s")
TOTAL_COLUMN = "loss"
BAR_REFRESH_S = 1.0  # tqdm redraws at most once a second: cheap, and readable in a notebook


class CsvTrainLog:
    """Appends one row per iteration to ``path``; the header comes from the first row's keys."""

    def __init__(self, path: str | Path, resume_iteration: int | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.columns: list[str] | None = None
        self.dropped_rows = 0  # torn or out-of-range rows cut when resuming
        if resume_iteration is not None and self.path.is_file():
            self._truncate_after(resume_iteration)
        else:
            self.path.unlink(missing_ok=True)
        self._file = open(self.path, "a", newline="")
        self._writer = None

    def _truncate_after(self, iteration: int) -> None:
        """Keep the header and the rows up to ``iteration``: later ones will be redone."""
        with open(self.path, newline="") as f:
            rows = list(csv.reader(f))
        if not rows:
            return
        header, body = rows[0], rows[1:]
        kept = [r for r in body if len(r) == len(header) and _is_int(r[0]) and int(r[0]) <= iteration]
        self.dropped_rows = len(body) - len(kept)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        with open(tmp, "w", newline="") as f:
            csv.writer(f).writerows([header, *kept])
        os.replace(tmp, self.path)
        self.columns = header

    def write(self, row: dict[str, float]) -> None:
        """One iteration's values; the keys must be the same columns every time."""
        if self.columns is None:
            self.columns = list(row)
        elif list(row) != self.columns:
            raise ValueError(f"{self.path}: the log has columns {self.columns} but this iteration "
                             f"has {list(row)}; the criterion must return the same loss parts "
                             f"every iteration")
        if self._writer is None:
            self._writer = csv.writer(self._file)
            if self._file.tell() == 0:
                self._writer.writerow(self.columns)
        self._writer.writerow([_format(v) for v in row.values()])
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def _is_int(text: str) -> bool:
    return text.strip().isdigit()


def _format(value) -> str:
    if isinstance(value, float) and math.isfinite(value):
        return repr(value)
    return str(value)


class Progress:
    """tqdm bar over the run's iterations (rank 0 only), or text lines when not on a terminal."""

    def __init__(self, total: int, initial: int, enabled: bool, log_every: int) -> None:
        self.enabled = enabled
        self.log_every = log_every
        self.bar = tqdm(total=total, initial=initial, disable=None if enabled else True,
                        mininterval=BAR_REFRESH_S, dynamic_ncols=True, unit="it")
        self.total = total

    def message(self, text: str) -> None:
        """A line above the bar (or on stdout when the bar is off)."""
        if self.enabled:
            tqdm.write(text, file=sys.stdout)

    def update(self, row: dict[str, float], epoch_text: str) -> None:
        if not self.enabled:
            return
        parts = {k: f"{v:.4g}" for k, v in row.items() if k not in BOOKKEEPING_COLUMNS}
        if not self.bar.disable:
            self.bar.set_description(epoch_text, refresh=False)
            self.bar.set_postfix(parts, refresh=False)
            self.bar.update(1)
        elif self.log_every and row["iteration"] % self.log_every == 0:
            losses = " ".join(f"{k} {v}" for k, v in parts.items())
            print(f"{epoch_text} it {row['iteration']}/{self.total} {losses} "
                  f"lr {row['lr']:.3g} {row['images_per_s']:.1f} img/s", flush=True)

    def close(self) -> None:
        self.bar.close()
