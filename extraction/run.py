"""One run of tools/extract_frames_flow.py over a root, between its command line and its
processes (extraction/pool.py): the videos it takes (all, or one shard's, less those
already done), its progress, the files all shards share (index.json, the custom split, the
failure lists) and the summary it prints. ``extract`` runs holding the root's locks
(extraction/locks.py).
"""

import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from dataloader.splits import SPLIT_FOLDERS, write_custom_split
from extraction.locks import state_lock
from extraction.pool import OutOfSpace, Plan, run
from extraction.root import (
    STATE_DIR,
    check_video_name,
    is_done,
    shard_of,
    split_video_name,
    unsafe_name,
    write_index,
)
from extraction.settings import INDEX_NAME, ExtractionSettings
from utils.atomic import DiskFull, write_text
from utils.errors import UserError
from utils.video_names import VIDEO_EXTENSIONS

FAILED_NAME = "failed.txt"


def find_named_videos(videos_dir: Path) -> dict[str, Path]:
    """Video name (file name without extension) -> path; names must be safe folder names and
    unique, since they name the folders (refused before anything is written)."""
    if not videos_dir.is_dir():
        raise UserError(
            f"--videos {videos_dir} is not a folder; give the folder holding the videos"
        )
    files = sorted(  # as extraction.decode.find_videos, and files named only ".avi"
        p
        for p in videos_dir.rglob("*")
        if p.name.lower().endswith(VIDEO_EXTENSIONS) and p.is_file()
    )
    names = {split_video_name(path.name)[0] for path in files}
    bad = [path for path in files if unsafe_name(split_video_name(path.name)[0]) is not None]
    if bad:
        more = f"; {len(bad) - 1} more files have such names" if len(bad) > 1 else ""
        try:
            check_video_name(bad[0].name, names, shown=str(bad[0]))
        except UserError as err:
            raise UserError(f"{err}{more}") from None
    by_name: dict[str, Path] = {}
    for path in files:
        name = split_video_name(path.name)[0]
        if name in by_name:
            raise UserError(
                f"two videos are named {name!r} ({by_name[name]} and {path}); "
                "output folders are named by file name, so rename one"
            )
        by_name[name] = path
    if not by_name:
        raise UserError(
            f"no videos (.avi .mp4 .mkv .webm) found under --videos {videos_dir}; check the path"
        )
    return by_name


def write_or_say_full(write, root: Path):
    """``write()``; a full disk there is one line that says what is kept and how to go on."""
    try:
        return write()
    except DiskFull as err:
        raise UserError(
            f"{err}; the finished videos are kept in {root}: free some space and run the same "
            "command again to continue"
        ) from err


@dataclass
class Job:
    """What a run extracts: the ``videos`` (name -> path) found under ``videos_dir``, into
    ``root`` with ``settings``; of them only shard I of N where ``shard`` is (I, N); with
    ``test_fraction``, also a custom split of the extracted videos by their class folder."""

    videos_dir: Path
    videos: dict[str, Path]
    root: Path
    settings: ExtractionSettings
    shard: tuple[int, int] | None = None
    test_fraction: float | None = None

    @cached_property
    def sources(self) -> dict[str, str]:
        """Video name -> its path under ``videos_dir`` (as index.json and failed.txt say it)."""
        return {n: str(p.relative_to(self.videos_dir)) for n, p in self.videos.items()}

    @cached_property
    def mine(self) -> dict[str, Path]:
        """The videos of this run: all, or those of its shard."""
        if self.shard is None:
            return self.videos
        index, count = self.shard
        return {n: p for n, p in self.videos.items() if shard_of(n, count) == index}

    @property
    def failed_path(self) -> Path:
        """This run's list of failures (the shards must not remove each other's)."""
        if self.shard is None:
            return self.root / FAILED_NAME
        index, count = self.shard
        return self.root / f"failed-{index}-of-{count}.txt"

    def todo(self) -> list[tuple[str, Path]]:
        """(name, path) of this run's videos not done yet, the longest first (no straggler at
        the end)."""
        todo = [(n, p) for n, p in self.mine.items() if not is_done(self.root, n)]
        return sorted(todo, key=lambda item: -item[1].stat().st_size)


class Tally:
    """Progress of a run, in frames: the bar's total is the frames the containers of the
    started videos declare plus, for each video not started, their mean."""

    def __init__(self, bar, videos: int):
        self.bar, self.videos = bar, videos
        self.started, self.declared, self.frames = 0, 0, 0
        self.finished, self.failed = 0, {}
        self.start = time.perf_counter()

    def __call__(self, kind, name, value):
        if kind == "start":
            self.started += 1
        elif kind == "expect":
            self.declared += value
        elif kind == "frames":
            self.frames += value
            self.bar.update(value)
        elif kind == "done":
            self.finished += 1
        elif kind == "failed":
            self.failed[name] = value
        if kind in ("expect", "done", "failed"):
            mean = self.declared / max(1, self.started)
            self.bar.total = max(
                self.frames, round(self.declared + mean * (self.videos - self.started))
            )
            ended = self.finished + len(self.failed)
            self.bar.set_postfix_str(f"videos {ended}/{self.videos}, {len(self.failed)} failed")


def extract(job: Job, todo: list, plan: Plan, run_folder, debug: bool = False) -> int:
    """Extract ``todo`` (``job.todo()``) as ``plan`` says, in ``run_folder``
    (extraction.locks.RunFolder), then write the shared files and print the summary; the exit
    status: 0, 1 when videos failed, 130 when interrupted (Ctrl-C)."""
    skipped = len(job.mine) - len(todo)
    part = f" (shard {job.shard[0]}/{job.shard[1]}: {len(job.mine)} of them)" if job.shard else ""
    doing = (
        f"{len(todo)} to extract with {plan.workers} worker(s)" if todo else "nothing to extract"
    )
    if todo and plan.devices:
        doing += f" and {len(plan.devices)} solver process(es) on {','.join(plan.devices)}"
    print(
        f"{len(job.videos)} videos under {job.videos_dir}{part}: {skipped} already done, "
        f"{doing}, preset {job.settings.preset}",
        flush=True,
    )

    from utils.progress import progress

    interrupted = False
    with progress(total=0, unit="frame", leave=True) as bar:
        tally = Tally(bar, len(todo))
        try:
            run(todo, job.root, job.settings, plan, tally, debug, run_folder)
        except KeyboardInterrupt:
            if debug:
                raise
            interrupted = True
        except OutOfSpace as err:
            _disk_full(job, err)
    elapsed = time.perf_counter() - tally.start
    listed = write_or_say_full(lambda: _write_shared(job, tally.failed, interrupted), job.root)
    done = sum(is_done(job.root, name) for name, _ in todo)
    _summary(job, tally, elapsed, done, skipped, listed)
    if interrupted:
        left = len(todo) - done - len(tally.failed)
        print(
            f"interrupted: {left} videos not extracted (nothing of them is left in {job.root}); "
            "run the same command again to continue: finished videos are skipped"
        )
        return 130
    return 1 if tally.failed else 0


def _write_shared(job: Job, failed: dict[str, str], interrupted: bool) -> int:
    """index.json, the split and this run's failure list, one run at a time: a shard's index
    lists the videos of every shard finished so far."""
    with state_lock(job.root / STATE_DIR):
        listed = write_index(job.root, job.settings, job.sources)
        if job.test_fraction is not None:
            _write_split(job)
        if failed:
            lines = "".join(f"{job.sources[n]}\t{failed[n]}\n" for n in sorted(failed))
            write_text(job.failed_path, lines)
        elif job.failed_path.exists() and not interrupted:
            job.failed_path.unlink()  # from an earlier run whose failures are now fixed or gone
    return listed


def _write_split(job: Job) -> None:
    """A custom split of the extracted videos by their class folder (the first folder under
    --videos); videos not extracted (failed, or another shard's) are left out."""
    out = job.root / SPLIT_FOLDERS["custom"]
    by_class: dict[str, list[str]] = {}
    left_out = 0
    for name, path in job.videos.items():
        if not is_done(job.root, name):
            left_out += 1
            continue
        parts = path.relative_to(job.videos_dir).parts
        if len(parts) < 2:
            raise UserError(
                f"{path} is not in a class folder; --test-fraction needs --videos laid out as "
                "<class>/<video>"
            )
        by_class.setdefault(parts[0], []).append(name)
    counts = write_custom_split(by_class, out, job.test_fraction)
    missing = f"; {left_out} videos not extracted are left out" if left_out else ""
    print(
        f"wrote {out}/classes.txt, train.txt, test.txt: {len(by_class)} classes, "
        f"{counts['train']} training and {counts['test']} test videos{missing}"
    )


def _summary(job: Job, tally: Tally, elapsed: float, done: int, skipped: int, listed: int):
    failed = tally.failed
    truncated = sum("truncated:" in message for message in failed.values())
    print(
        f"extracted {done} videos in {elapsed:.1f} s ({tally.frames / max(elapsed, 1e-9):.1f} "
        f"frames/s decoded); skipped {skipped} already done; {len(failed)} failed"
        + (f" ({truncated} truncated)" if truncated else "")
    )
    for name in sorted(failed):
        print(f"  failed: {job.sources[name]}: {failed[name]}")
    if failed:
        print(f"failed videos are listed in {job.failed_path}")
    print(f"wrote {job.root / INDEX_NAME} ({listed} videos)")


def _disk_full(job: Job, err: OutOfSpace) -> None:
    """A full disk: index.json for the finished videos if it still fits, then one line."""
    try:
        with state_lock(job.root / STATE_DIR):
            write_index(job.root, job.settings, job.sources)
    except (OSError, UserError):
        pass  # no room for it either: the next run writes it
    kept = sum(is_done(job.root, name) for name in job.mine)
    what = err.path or "its files"
    raise UserError(
        f"the disk is full: could not write {what} of {job.sources.get(err.name, err.name)}; "
        f"the videos finished so far ({kept}) are kept in {job.root}: free some space and run "
        "the same command again to continue (finished videos are skipped)"
    ) from None
