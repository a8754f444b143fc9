"""RichProgress on a per-layer sweep in lockstep: totals, counts and the images bar never past its end."""

from __future__ import annotations

import io
from collections import Counter

from rich.console import Console

from onnxnoise.config import NoiseConfig, RunConfig, SweepConfig
from onnxnoise.engine.context import prepare_context
from onnxnoise.engine.executor import LocalExecutor
from onnxnoise.engine.layout import TrialLayout
from onnxnoise.noise import make_noise_model
from onnxnoise.report.progress import RichProgress
from onnxnoise.store.store import open_store
from onnxnoise.sweep import run_sweep

#: The demo classifier's parameter layers (conv1, bn1, conv2, bn2, fc1, fc2).
LAYERS = 6
IMAGES = 100


class _Watched(RichProgress):
    """Records the bars after each event."""

    def __init__(self, console: Console) -> None:
        super().__init__(console, make_noise_model("gaussian-snr"))
        self.groups: list[int] = []
        self.seen: list[tuple[float, float, int, int]] = []  # (trials bar done, its total, images, images total)

    def group(self, trials: int) -> None:
        super().group(trials)
        self.groups.append(trials)

    def advance(self, images: int) -> None:
        super().advance(images)
        task = self._task(self.task)
        self.seen.append((task.completed, task.total, self.group_images, self.group_total))

    def _task(self, task_id):
        return next(t for t in self.bar.tasks if t.id == task_id)


def test_per_layer_lockstep_progress_counts_images_and_trials(demo_files, tmp_path):
    model, data = demo_files
    run = RunConfig(model=model, data=data, noise=NoiseConfig(strengths=(10.0, 5.0), seeds=(0,)), limit=IMAGES,
                    batch_size=32, device="cpu")
    config = SweepConfig(run, modes=("all", "per-layer"), prefix_reuse=True)
    progress = _Watched(Console(file=io.StringIO(), width=120))
    with open_store(tmp_path / "trials.sqlite") as store:
        result = run_sweep(config, store, progress=progress, context=prepare_context(run),
                           executor=LocalExecutor(prefix_reuse=True, lockstep=True,
                                                  layout=TrialLayout(sessions=2, threads=1, reason="test")))
    progress.stop()
    planned = 1 + 2 + 2 * LAYERS  # baseline, 2 strengths x (all + one per layer)
    assert result.ran == result.planned == planned
    # the baseline alone, the 2 whole-model trials side by side (two sessions), then per strength the 6 layers at once
    assert Counter(progress.groups) == Counter({1: 1, 2: 1, LAYERS: 2})
    trials = progress._task(progress.task)
    assert (progress.trials, progress.done) == (planned, planned)
    assert (trials.completed, trials.total) == (planned * IMAGES, planned * IMAGES)
    assert all(images <= total for _, _, images, total in progress.seen)  # never 14976/500
    assert max(total for *_, total in progress.seen) == LAYERS * IMAGES
    assert max(images for *_, images, _ in progress.seen) == LAYERS * IMAGES  # each lockstep pass counted whole
    # mid-pass (batches of 32 images): both bars moved with the images, the trials bar between two trial counts
    middle = [(done, images) for done, _, images, total in progress.seen if total == LAYERS * IMAGES
              and 0 < images < total]
    assert middle and all(done % IMAGES for done, _ in middle), progress.seen


def test_bars_at_80_columns_keep_counts_and_times_and_cut_the_status():
    progress = RichProgress(Console(file=io.StringIO(), width=80), make_noise_model("pcm"))
    progress.start(1234, 10_000)
    progress.group(12)
    progress.advance(1500)
    progress.trial_done({"strength": 86400.0, "seed": 3, "mode": "per-layer", "layer_index": 112, "error": None,
                         "top1_correct": 4557, "images": 10_000})
    progress.stop()
    for width in (80, 120):
        console = Console(file=io.StringIO(), width=width, record=True, color_system=None)
        console.print(progress.bar.make_tasks_table(progress.bar.tasks))
        lines = console.export_text().splitlines()
        assert len(lines) == 2 and all(len(line) <= width for line in lines)
        assert "1/1,234" in lines[0] and "1,500/120,000" in lines[1] and "images, 12 trials" in lines[1]
        assert all(line.count("0:00:00") == 1 for line in lines)  # elapsed shown on both rows
    status = "per-layer 112 t = 1 d seed 3: top-1 45.57%"
    assert status in lines[0]  # whole at 120; at 80 cut with an ellipsis at the edge
