"""A batch of videos scored into result files (tools/predict.py --csv/--json): one row per
video as soon as it is scored, a video that fails is a row with its error, and a rerun skips
the videos already done (utils.result_files). With --threshold a ``label`` column follows the
video: its fused top-1, or ``unknown`` below the threshold (utils.unknown)."""

import sys

from utils.errors import UserError, one_line
from utils.progress import progress


class Work:
    """Seconds of video and of work per stream, summed over the videos of a run."""

    def __init__(self):
        self.video, self.seconds = 0.0, {}

    def add(self, video) -> None:
        self.video += video.num_frames / (video.fps or 25.0)
        for name, seconds in video.seconds.items():
            self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    def summary(self) -> str:
        """Each stream's real-time factor: seconds of video per second of its work."""
        parts = [
            f"{name} {self.video / max(seconds, 1e-9):.1f}x ({seconds:.1f} s)"
            for name, seconds in self.seconds.items()
            if name != "decode"
        ]
        decode = self.seconds.get("decode", 0.0)
        return (
            f"real-time factor (seconds of video per second of work) over {self.video:.1f} s "
            f"of video: {', '.join(parts)}; decoding {decode:.1f} s"
        )


def csv_header(names: list[str], top: int, label: bool = False) -> list[str]:
    """The batch CSV: the video, its label (with --threshold), each column's top-k classes and
    probabilities, the error."""
    return ["video", *(["label"] if label else [])] + [
        f"{c}_{what}{k}" for c in names for k in range(1, top + 1) for what in ("class", "prob")
    ] + ["error"]  # fmt: skip


def csv_cells(result: dict, names: list[str], top: int, label: bool = False) -> list[str]:
    cells = [result["video"], *([result.get("top1", "")] if label else [])]
    for name in names:
        ranked = result.get("top", {}).get(name, [])
        cells += [x for cls, prob in ranked for x in (cls, f"{prob:.4f}")] or [""] * (2 * top)
    return [*cells, result.get("error") or ""]


def run_batch(videos, score, names: list[str], top: int, files, label: bool = False) -> tuple:
    """Score every video not already in the result files (``score(path)`` -> the JSON record
    and what was drawn); a failure is a row, not the end. The records, failed ones, the work."""
    results, failed, work = [], [], Work()
    bar = progress(videos, unit="video", leave=True)
    for path in bar:
        if str(path) in files.done:
            continue
        try:
            result, drawn = score(path)
        except (UserError, OSError) as err:
            result = {"video": str(path), "error": one_line(err)}
            failed.append(result)
            bar.write(f"{path}: failed: {result['error']}")
        else:
            work.add(drawn["video"])
            if result.get("warning"):
                bar.write(f"warning: {result['warning']}", file=sys.stderr)
            best, prob = result["top"][names[-1]][0]
            shown = f"{best} {100 * prob:.1f}%"
            bar.write(f"{path}: {shown if result['top1'] == best else f'unknown ({shown})'}")
        files.add(csv_cells(result, names, top, label), result)
        files.done.add(str(path))  # a video named twice is scored once
        results.append(result)
    return results, failed, work
