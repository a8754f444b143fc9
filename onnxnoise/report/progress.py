"""Progress of a run on the terminal: rich bars over trials and images (the executor's progress receiver)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from onnxnoise.engine.executor import Progress as _Progress
from onnxnoise.noise import NoiseModel

__all__ = ["RichProgress"]


class RichProgress(_Progress):
    """Progress bars of trials and of the images of the current trial on a rich ``console`` (transient).

    Without a terminal (logs, pipes) rich shows no bar, so a line is printed every ~10% of the trials.
    The CLI's ``bench`` and ``sweep`` use it; so does the Python API with ``progress=True`` (on stderr).
    """

    def __init__(self, console: Console, noise_model: NoiseModel) -> None:
        self.noise_model = noise_model
        self.bar = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"), TimeElapsedColumn(), TimeRemainingColumn(),
            console=console, transient=True,
        )
        self.task = None

    def start(self, trials: int, images_per_trial: int) -> None:
        self.bar.start()
        self.task = self.bar.add_task("trials", total=trials, status="")
        self.images = self.bar.add_task("images", total=images_per_trial, status="")

    def advance(self, images: int) -> None:
        self.bar.advance(self.images, images)

    def _log(self, text: str) -> None:
        """Without a terminal (logs, pipes) rich shows no bar: print a line every ~10% instead."""
        done = int(self.bar.tasks[0].completed)
        total = int(self.bar.tasks[0].total or 0)
        if not self.bar.console.is_terminal and (done == total or done % max(1, total // 10) == 0):
            self.bar.console.print(f"{done}/{total} trials, {self.bar.tasks[0].elapsed:.0f} s; last {text}")

    def trial_done(self, row: dict) -> None:
        label = self.noise_model.format_strength(row["strength"])
        if row["seed"] is not None:
            label += f" seed {row['seed']}"
        if row.get("mode") in ("per-layer", "cumulative"):
            label = f"{row['mode']} {row['layer_index']} {label}"
        status = (f"[red]failed: {row['error']}[/]" if row.get("error")
                  else f"top-1 {100.0 * row['top1_correct'] / row['images']:.2f}%")
        self.bar.update(self.task, advance=1, status=f"{label}: {status}")
        self._log(f"{label}: {status}")
        self.bar.reset(self.images)

    def stop(self) -> None:
        self.bar.stop()
