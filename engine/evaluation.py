"""A trained model on a test or validation set: its scores, the files they go to and the reports.

Used by the trainer (after the last epoch, and on the validation set every epoch) and by
``--evaluate`` (engine.run), whose output is named after the checkpoint and test options so it
never replaces a training run's ``video_scores.npz``.
"""

from pathlib import Path

from engine.config import TEST_SNIPPETS
from engine.distributed import is_main
from engine.loops import evaluate
from engine.streams import StreamSpec
from utils.scores import load_npz, save_scores


def test_mode(options) -> str:
    """How a test video was sampled, as score files and fusion's table say it."""
    crops = "10 crops" if options.ten_crop else "centre crop"
    if options.test_sequences:
        return f"{options.test_sequences} sequences of {options.num_segments} snippets, {crops}"
    return f"{options.test_snippets} snippets, {crops}"


def evaluation_scores_path(options, epoch: int) -> Path:
    """Where ``--evaluate`` writes: --scores-out, else a name of the checkpoint, its epoch and
    the test options, so it never replaces the training run's video_scores.npz."""
    if options.scores_out:
        return Path(options.scores_out)
    stem = Path(options.resume).name.removesuffix(".tar").removesuffix(".pth")
    name = f"eval_{stem}_e{epoch}"
    if options.ten_crop:
        name += "_tencrop"
    if options.softmax_average:
        name += "_softmax"
    if options.test_sequences:
        name += f"_s{options.test_sequences}x{options.num_segments}"
    elif options.test_snippets != TEST_SNIPPETS:
        name += f"_n{options.test_snippets}"
    return Path(options.record_dir) / f"{name}_scores.npz"


def score_kind(softmax_average: bool) -> str:
    """What an evaluation's video scores are (utils.metrics.SCORE_KINDS): mean logits, or mean
    probabilities with --softmax-average."""
    return "probabilities" if softmax_average else "logits"


def save_split_scores(path, loader, scores, spec: StreamSpec, options, classes, epoch) -> Path:
    """A score file of one evaluated set (test or validation), with what it was made with."""
    return save_scores(
        path,
        videos=loader.dataset.names,
        labels=loader.dataset.labels,
        classes=classes,
        scores=scores,
        stream=spec.name,
        split=0 if options.dataset == "custom" else options.split,  # 0: no official split
        epoch=epoch,
        kind=score_kind(options.softmax_average),
        test_mode=test_mode(options),
    )


def test_and_save(
    model, loader, spec: StreamSpec, options, device, classes, epoch, records=None, path=None
):
    """Evaluate on the test split; write the scores (``path``, default video_scores.npz in the
    record folder) and (with ``records``) a test.csv row."""
    scores, metrics = evaluate(
        model,
        loader,
        device,
        softmax_average=options.softmax_average,
        chunk=options.eval_chunk,
        amp=options.amp,
        desc=f"epoch {epoch} test",
    )
    path = path or Path(options.record_dir) / "video_scores.npz"
    if not is_main():  # every process has all scores (engine.loops.evaluate); one writes them
        return metrics
    save_split_scores(path, loader, scores, spec, options, classes, epoch)
    if records is not None:
        records.log("test", epoch, metrics)
    print(
        f"epoch {epoch} test: top-1 {metrics['top1']:.2f}%  top-5 {metrics['top5']:.2f}%  "
        f"mean class {metrics['mean_class']:.2f}%  loss {metrics['loss']:.4f}  "
        f"({metrics['videos']} videos, {metrics['seconds']:.0f} s) -> {path}",
        flush=True,
    )
    return metrics


def report_score_file(scores_path, prefix: str = "") -> list[Path]:
    """Per-class accuracy, confusion matrix and misclassified videos beside the score file (the
    main process; utils.reports.write_reports)."""
    from utils.reports import write_reports  # late: matplotlib takes seconds to import

    if not is_main():
        return []
    scores_path = Path(scores_path)
    return write_reports(load_npz(scores_path), scores_path.parent, prefix=prefix)
