"""Packed frames (dataloader/packs.py, tools/pack_frames.py): samples from packs are the samples
from the same frames in folders, bit for bit, for every builder; packs unzip into the folders;
the data scan finds bad packed frames; the converter resumes after a kill, refuses a second
writer and checks every packed file against its source."""

import json
import os
import shutil
import sys
import time
import zipfile
from dataclasses import fields
from pathlib import Path

import pytest
import torch

from dataloader import frame_index
from dataloader.checks import find_problems
from dataloader.datasets import DataError, FrameDataset, pack_bytes
from dataloader.layout import Layout
from dataloader.packs import read_member
from dataloader.samples import ClipSampleBuilder, FlowSampleBuilder, RgbSampleBuilder
from dataloader.splits import load_split
from tests.helpers import write_coded_video
from tests.test_datasets import MMACTION
from tools import pack_frames
from utils.errors import UserError, run_cli
from utils.faults import ENV
from utils.locks import folder_lock


@pytest.fixture(scope="module")
def packed(frame_root, tmp_path_factory):
    """The tiny dataset packed by the converter (one uninterrupted run)."""
    out = tmp_path_factory.mktemp("packed") / "root"
    assert pack_frames.main([str(frame_root), "--out", str(out)]) == 0
    return out


def _snapshot(root) -> dict:
    """Every file under ``root`` but hidden ones (the lock, the frame-count cache): its bytes."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    }


BUILDERS = {
    "rgb": lambda: RgbSampleBuilder(num_segments=2, test_snippets=3, crop_size=16),
    "flow": lambda: FlowSampleBuilder(
        num_segments=2, test_snippets=2, crop_size=16, stack_length=4
    ),
    "clip": lambda: ClipSampleBuilder(  # 80x60 frames, short side 24: decoded at half size
        num_segments=1, test_snippets=2, crop_size=16, clip_length=4, short_side=24
    ),
}


@pytest.mark.parametrize("train", [True, False], ids=["train", "test"])
@pytest.mark.parametrize("stream", BUILDERS)
def test_samples_from_packs_are_the_folder_samples_bit_for_bit(frame_root, packed, stream, train):
    split = load_split("ucf101", frame_root / "ucfTrainTestlist", 1)
    videos = split.train if train else split.test
    samples = {}
    for root in (frame_root, packed):
        data = FrameDataset(root, videos, train, BUILDERS[stream](), cache=False)
        assert all(bool(item.pack) == (root == packed) for item in data.items)
        torch.manual_seed(0)
        samples[root] = [data[i] for i in range(len(data))]
    for (folder, label), (pack, packed_label) in zip(*samples.values(), strict=True):
        assert label == packed_label and torch.equal(folder, pack)


def test_a_pack_unzips_into_the_frame_folders_and_records_its_count(frame_root, packed, tmp_path):
    pack = packed / "tvl1_flow" / "v_Class1_g02_c01.flow.zip"
    with zipfile.ZipFile(pack) as archive:
        assert {i.compress_type for i in archive.infolist()} == {zipfile.ZIP_STORED}
        assert b'"u/v_Class1_g02_c01/frame%06d.jpg": ' in archive.comment
        archive.extractall(tmp_path)
    source = frame_root / "tvl1_flow"
    assert _snapshot(tmp_path) == {
        k: v for k, v in _snapshot(source).items() if "v_Class1_g02_c01" in k
    }
    count = len(list((source / "u" / "v_Class1_g02_c01").iterdir()))
    assert f'_c01/frame%06d.jpg": {count}'.encode() in zipfile.ZipFile(pack).comment


def test_a_pack_is_used_where_the_folder_is_absent_and_its_count_cached(frame_root, tmp_path):
    root = tmp_path / "root"
    pack_frames.main([str(frame_root), "--out", str(root)])
    split = load_split("ucf101", frame_root / "ucfTrainTestlist", 1)
    unpacked = root / "jpegs_256" / split.test[0].name
    with zipfile.ZipFile(str(unpacked) + ".zip") as archive:
        archive.extractall(unpacked.parent)
    data = FrameDataset(root, split.test, False, BUILDERS["rgb"]())
    assert [bool(item.pack) for item in data.items] == [False] + [True] * (len(split.test) - 1)

    def no_opening(*args):
        raise AssertionError("a cached pack was opened again")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(frame_index, "pack_counts", no_opening)
        again = FrameDataset(root, split.test, False, BUILDERS["rgb"]())
    assert [i.num_frames for i in again.items] == [i.num_frames for i in data.items]


def test_mmaction_nested_layout_packs_beside_each_other_and_reads_alike(tmp_path):
    """rawframes/<class>/<video>/ with RGB and flow in one folder: two packs side by side."""
    source, root = tmp_path / "src", tmp_path / "root"
    video = write_coded_video(source, "Diving/v_Diving_g01_c01", 12, MMACTION)
    options = [f"--{f.name.replace('_', '-')}={getattr(MMACTION, f.name)}" for f in fields(Layout)]
    assert pack_frames.main([str(source), "--out", str(root), *options]) == 0
    packs = sorted(p.name for p in (root / "rawframes" / "Diving").iterdir())
    assert packs == ["v_Diving_g01_c01.flow.zip", "v_Diving_g01_c01.zip"]
    for stream in ("rgb", "flow"):
        a, b = (
            FrameDataset(r, [video], False, BUILDERS[stream](), layout=MMACTION, cache=False)
            for r in (source, root)
        )
        assert b.items[0].pack and a.items[0].num_frames == b.items[0].num_frames
        assert torch.equal(a[0][0], b[0][0])


def _damage(pack, member: str, at: int, data: bytes) -> None:
    """Overwrite bytes of ``member`` inside the pack file, ``at`` bytes into its data."""
    with zipfile.ZipFile(pack) as archive:
        info = archive.getinfo(member)
    start = info.header_offset + 30 + len(info.filename)
    with open(pack, "r+b") as file:
        file.seek(start + at)
        file.write(data)


def test_the_data_scan_finds_bad_packed_frames_and_unreadable_packs(frame_root, tmp_path):
    root = tmp_path / "root"
    pack_frames.main([str(frame_root), "--out", str(root)])
    split = load_split("ucf101", frame_root / "ucfTrainTestlist", 1)
    bad, cut = split.test[0].name, split.test[1].name
    bad_pack, cut_pack = (root / "jpegs_256" / f"{name}.zip" for name in (bad, cut))
    _damage(bad_pack, f"{bad}/frame000003.jpg", 400, os.urandom(300))
    cut_pack.write_bytes(cut_pack.read_bytes()[:5000])
    data = FrameDataset(root, split.test, False, BUILDERS["rgb"](), cache=False, strict=False)
    problems = find_problems(data)
    assert set(problems) == {bad, cut}
    assert len(problems[bad]) == 1
    assert problems[bad][0].startswith(f"corrupt frame {bad_pack}/{bad}/frame000003.jpg (")
    assert problems[cut] == [
        f"unreadable pack {cut_pack} (not a zip file (no end of central directory))"
    ]
    with pytest.raises(DataError, match=f"unreadable pack {cut_pack} .*; re-extract or repack"):
        data.reader(data.items[1])(0)


def forked(argv, fault: str) -> int:
    """tools/pack_frames.py ``argv`` in a forked child with TWO_STREAM_FAULT=``fault``: its
    exit code (negative: the signal that ended it)."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 3
        try:
            sys.stdout = sys.stderr = open(os.devnull, "w")  # noqa: SIM115 (closed by _exit)
            os.environ[ENV] = fault
            code = run_cli(pack_frames.main, argv)
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        finally:
            os._exit(code)
    deadline = time.monotonic() + 60
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    if done[0] == 0:
        os.kill(pid, 9)
        done = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(done[1])


@pytest.mark.parametrize(
    "fault", ["pack.member:kill:40", "pack.done:kill:3", "write.v_Class0_g03_c01.flow.zip:kill"]
)
def test_a_rerun_after_a_kill_gives_what_an_uninterrupted_run_gives(
    frame_root, packed, tmp_path, fault
):
    out = tmp_path / "out"
    argv = [str(frame_root), "--out", str(out)]
    assert forked(argv, fault) == -9
    assert _snapshot(out) != _snapshot(packed)
    assert pack_frames.main(argv) == 0
    assert _snapshot(out) == _snapshot(packed)
    assert not list(out.rglob("*.tmp"))


def test_a_second_writer_is_refused(frame_root, tmp_path):
    out = tmp_path / "out"
    with (
        folder_lock(out, "test", "wait"),
        pytest.raises(
            UserError, match=rf"the pack folder {out} is being written by process {os.getpid()}"
        ),
    ):
        pack_frames.main([str(frame_root), "--out", str(out)])
    assert not list(out.rglob("*.zip"))


def test_a_packed_file_that_differs_from_its_source_is_refused(frame_root, tmp_path, monkeypatch):
    from dataloader import packs

    reads = {}

    def changing(path):  # the source file changes between packing and the check
        reads[path] = reads.get(path, 0) + 1
        data = Path(path).read_bytes()
        return data + b"x" if reads[path] == 2 and path.endswith("frame000005.jpg") else data

    monkeypatch.setattr(packs, "_file_bytes", changing)
    out = tmp_path / "out"
    with pytest.raises(UserError, match="frame000005.jpg packed into .* differs from its source"):
        pack_frames.main([str(frame_root), "--out", str(out)])
    assert not list(out.rglob("*.zip")) and not list(out.rglob("*.tmp"))


def test_a_rerun_packs_a_re_extracted_frame_again_and_says_the_root_holds_packs(
    frame_root, tmp_path
):
    """Same names, new bytes (a video extracted again): the rerun replaces its pack; the
    converted root's index.json says it holds packs."""
    source = tmp_path / "src"
    shutil.copytree(frame_root, source)
    out = tmp_path / "out"
    assert pack_frames.main([str(source), "--out", str(out)]) == 0
    video = sorted((source / "jpegs_256").iterdir())[0]
    frame = video / "frame000002.jpg"
    new = (video / "frame000001.jpg").read_bytes()
    frame.write_bytes(new)
    os.utime(frame, ns=(time.time_ns() + 10**9,) * 2)  # written after the pack
    assert pack_frames.main([str(source), "--out", str(out)]) == 0
    pack = out / "jpegs_256" / f"{video.name}.zip"
    assert read_member(str(pack), f"{video.name}/frame000002.jpg").tobytes() == new
    if (source / "index.json").is_file():
        assert json.loads((out / "index.json").read_text())["storage"] == "packs"


def test_a_corrupt_deflated_member_is_a_bad_frame_not_a_crash(tmp_path):
    """A zip made by another tool, its compressed data damaged: a DataError naming the pack,
    which --skip-bad-videos and the scan handle."""
    pack = tmp_path / "v_X.zip"
    with zipfile.ZipFile(pack, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("v_X/frame000001.jpg", bytes(range(256)) * 40)
    data = bytearray(pack.read_bytes())
    data[50:58] = b"\xff" * 8  # inside the compressed data, after the 48-byte local header
    pack.write_bytes(bytes(data))
    with pytest.raises(DataError, match="unreadable pack .*v_X.zip"):
        pack_bytes(str(pack), "v_X/frame000001.jpg")


def test_a_damaged_index_json_is_one_line_naming_it(frame_root, tmp_path):
    source = tmp_path / "src"
    shutil.copytree(frame_root, source)
    (source / "index.json").write_text('{"settings": {')  # cut short
    with pytest.raises(UserError, match=r"src/index.json is not the JSON record .*--index-only"):
        pack_frames.main([str(source), "--out", str(tmp_path / "out")])
