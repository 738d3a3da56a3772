"""Per-epoch checkpoints of the watched subject models (`metrics.checkpoint`), as safetensors files.

Saving every epoch of every model would write gigabytes per thousand examples, so only the models whose
training curves go to TensorBoard are saved: the first `CURVE_SAMPLE` examples of each cohort. Each
epoch of each stage becomes one file,

    <metrics.dir>/checkpoints/example-<index>/stage<1|2>-epoch-<NNN>.safetensors

holding the weights under their `nn.Sequential` names (`network.0.weight`, ...), loadable with
`safetensors.torch.load_file` into `SubjectMLP`. With `save_optimizer_state`, Adam's moments are stored
beside them as `adam.exp_avg.<name>` and `adam.exp_avg_sq.<name>`, and its step count in the metadata.
The metadata holds one key, `snapshot`: a JSON object naming the example, stage and epoch (and Adam's
step). One key, because safetensors writes several in an arbitrary order, and a rerun of a cohort
must write the same bytes. Files are written atomically.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from pathlib import Path

import torch
from safetensors.torch import save_file

from weightzoo.judge.pairs import TrainedExample
from weightzoo.output.files import write_atomic


def snapshot_path(metrics_dir: Path, index: int, stage: int, epoch: int) -> Path:
    return (
        Path(metrics_dir)
        / "checkpoints"
        / f"example-{index:07d}"
        / f"stage{stage}-epoch-{epoch:03d}.safetensors"
    )


def remove_snapshots_after(metrics_dir: Path, last: int) -> None:
    """Drop the snapshots of examples past `last`: trained beyond the end of a run (workers run ahead),
    they are not part of its dataset."""
    for folder in (Path(metrics_dir) / "checkpoints").glob("example-*"):
        number = folder.name.removeprefix("example-")
        if folder.is_dir() and len(number) == 7 and number.isdigit() and int(number) > last:  # ours only
            shutil.rmtree(folder)


def snapshot_tensors(snapshot: dict) -> dict[str, torch.Tensor]:
    """The tensors of one epoch's snapshot, named as stored."""
    tensors = {name: t.contiguous() for name, t in snapshot["weights"].items()}
    adam = snapshot.get("adam")
    if adam is not None:
        for moment in ("exp_avg", "exp_avg_sq"):
            tensors.update({f"adam.{moment}.{name}": t.contiguous() for name, t in adam[moment].items()})
    return tensors


def write_snapshots(metrics_dir: Path, examples: Iterable[TrainedExample]) -> list[Path]:
    """Write every epoch snapshot the examples carry; returns the files written."""
    written = []
    for example in examples:
        index = example.plan.index
        for snapshot in example.result.snapshots:
            stage, epoch = snapshot["stage"], snapshot["epoch"]
            about = {"example_index": index, "stage": stage, "epoch": epoch}
            if "adam" in snapshot:
                about["adam_step"] = snapshot["adam"]["step"]
            metadata = {"snapshot": json.dumps(about, sort_keys=True)}
            path = snapshot_path(metrics_dir, index, stage, epoch)
            tensors = snapshot_tensors(snapshot)
            write_atomic(
                path, lambda tmp, tensors=tensors, metadata=metadata: save_file(tensors, tmp, metadata)
            )
            written.append(path)
    return written
