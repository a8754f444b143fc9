"""Progress of a run on the terminal: rich bars over trials and images (the executor's progress receiver)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Column

from onnxnoise.engine.executor import Progress as _Progress
from onnxnoise.noise import NoiseModel

__all__ = ["RichProgress"]


class RichProgress(_Progress):
    """Progress bars of the run's trials and of the images of the trials running now, on a rich ``console``
    (transient).

    Both bars move with images evaluated, so their time-remaining estimates follow the images per second:
    the ``trials`` bar's length is ``trials x images_per_trial`` image evaluations (its count reads
    ``done/planned trials``), the ``images`` bar's is ``k x images_per_trial`` for the ``k`` trials running
    together (:meth:`group`: per-layer trials in lockstep pass each batch through all of them; the bar says
    ``images, k trials``). When a group finishes, the trials bar is set to exactly ``done x
    images_per_trial`` (a trial that failed before its images still counts as done). Counting trials instead
    would make a lockstep group of 30 trials finish 30 at once and the estimate read seconds with minutes
    to go.

    Without a terminal (logs, pipes) rich shows no bar, so a line is printed every ~10% of the trials.
    The CLI's ``bench`` and ``sweep`` use it; so does the Python API with ``progress=True`` (on stderr).
    """

    def __init__(self, console: Console, noise_model: NoiseModel) -> None:
        self.noise_model = noise_model
        # the last trial's status last, cut with an ellipsis at the terminal's edge: at 80 columns it would
        # otherwise squeeze out the bar and the times
        self.bar = Progress(
            TextColumn("{task.description}", table_column=Column(no_wrap=True)), BarColumn(bar_width=24),
            TextColumn("{task.fields[count]}", table_column=Column(no_wrap=True)), TimeElapsedColumn(),
            TimeRemainingColumn(), TextColumn("{task.fields[status]}", table_column=Column(
                no_wrap=True, overflow="ellipsis", ratio=1)),
            console=console, transient=True, expand=True,
        )
        self.task = None
        self.trials = self.done = self.per_trial = 0
        self.left = 1  # trials of the running group not yet done
        self.group_images = self.group_total = 0  # images counted in the running group, and its length

    def start(self, trials: int, images_per_trial: int) -> None:
        self.trials, self.per_trial, self.done, self.left = trials, images_per_trial, 0, 1
        self.bar.start()
        self.task = self.bar.add_task("trials", total=trials * images_per_trial, count=f"0/{trials:,}", status="")
        self.images = self.bar.add_task("images", total=images_per_trial, count="", status="")
        self._images_of(1)

    def group(self, trials: int) -> None:
        self._images_of(trials)

    def _images_of(self, trials: int) -> None:
        """Restart the images bar for ``trials`` trials running together."""
        self.left = max(trials, 1)
        self.group_images, self.group_total = 0, self.left * self.per_trial
        self.bar.reset(self.images, total=self.group_total, count=f"0/{self.group_total:,}", status="",
                       description="images" + (f", {trials} trials" if trials > 1 else ""))

    def advance(self, images: int) -> None:
        self.group_images += images
        self.bar.update(self.images, advance=images, count=f"{self.group_images:,}/{self.group_total:,}")
        self.bar.advance(self.task, images)

    def _log(self, text: str) -> None:
        """Without a terminal (logs, pipes) rich shows no bar: print a line every ~10% instead."""
        done, total = self.done, self.trials
        if not self.bar.console.is_terminal and (done == total or done % max(1, total // 10) == 0):
            elapsed = next(t.elapsed for t in self.bar.tasks if t.id == self.task) or 0.0
            self.bar.console.print(f"{done}/{total} trials, {elapsed:.0f} s; last {text}")

    def trial_done(self, row: dict) -> None:
        label = self.noise_model.format_strength(row["strength"])
        if row["seed"] is not None:
            label += f" seed {row['seed']}"
        if row.get("mode") in ("per-layer", "cumulative"):
            label = f"{row['mode']} {row['layer_index']} {label}"
        status = (f"[red]failed: {row['error']}[/]" if row.get("error")
                  else f"top-1 {100.0 * row['top1_correct'] / row['images']:.2f}%")
        self.done += 1
        self.left -= 1
        self.bar.update(self.task, count=f"{self.done:,}/{self.trials:,}", status=f"{label}: {status}")
        if self.left <= 0:  # the group's last trial: its images are all counted, exactly
            self.bar.update(self.task, completed=self.done * self.per_trial)
            self._images_of(1)
        self._log(f"{label}: {status}")

    def stop(self) -> None:
        self.bar.stop()
