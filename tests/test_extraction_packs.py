"""tools/extract_frames_flow.py --pack: each video becomes one pack per modality holding the very
bytes tools/pack_frames.py packs from the folders the same extraction writes; the streams train
on the packed root as on folders; a kill during --pack extraction leaves nothing half done and
a rerun completes it; a root holds packs or folders, never both."""

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from dataloader.datasets import FrameDataset
from dataloader.samples import FlowSampleBuilder, RgbSampleBuilder
from dataloader.splits import load_split
from tests.test_faults_extraction import (  # noqa: F401 (reference: a fixture used here)
    ARGS,
    _leftovers,
    _main,
    _snapshot,
    reference,
)
from tools import pack_frames
from utils.errors import UserError
from utils.faults import ENV

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def extracted(reference, tmp_path_factory):  # noqa: F811
    """(videos, a root extracted to folders, the same videos extracted with --pack)."""
    videos, folders, _ = reference
    packs = tmp_path_factory.mktemp("pack_extraction") / "packs"
    assert _main(videos, packs, "--pack") == 0
    return videos, folders, packs


def test_extracted_packs_are_the_packs_converted_from_its_folders(extracted, tmp_path):
    _, folders, packs = extracted
    converted = tmp_path / "converted"
    assert pack_frames.main([str(folders), "--out", str(converted)]) == 0
    zips = {k: v for k, v in _snapshot(packs).items() if k.endswith(".zip")}
    assert sorted(zips) == [f"jpegs_256/clip{i}.zip" for i in range(4)] + [
        f"tvl1_flow/clip{i}.flow.zip" for i in range(4)
    ]  # one file per video and modality, no frame folder
    splits = {f"splits/{name}.txt" for name in ("classes", "train", "test")}
    assert set(_snapshot(packs)) == set(zips) | {"index.json"} | splits
    assert zips == {k: v for k, v in _snapshot(converted).items() if k.endswith(".zip")}
    with zipfile.ZipFile(packs / "tvl1_flow/clip1.flow.zip") as archive:
        for member in ("u/clip1/frame000003.jpg", "v/clip1/frame000007.jpg"):
            assert archive.read(member) == (folders / "tvl1_flow" / member).read_bytes()
    index = json.loads((packs / "index.json").read_text())
    assert index["storage"] == "packs"
    assert json.loads((folders / "index.json").read_text())["storage"] == "folders"
    assert index["videos"] == json.loads((folders / "index.json").read_text())["videos"]


@pytest.mark.parametrize(
    "builder",
    [
        RgbSampleBuilder(num_segments=2, crop_size=16),
        FlowSampleBuilder(num_segments=2, crop_size=16, stack_length=3),
    ],
    ids=["rgb", "flow"],
)
def test_samples_from_the_packed_root_are_those_from_folders(extracted, builder):
    _, folders, packs = extracted
    train = load_split("custom", packs / "splits").train
    samples = []
    for root in (folders, packs):
        torch.manual_seed(0)
        data = FrameDataset(root, train, True, builder, cache=False)
        samples.append([data[i][0] for i in range(len(data))])
    assert len(samples[1]) == len(train) > 0
    for folder_sample, pack_sample in zip(*samples, strict=True):
        assert torch.equal(folder_sample, pack_sample)


# RGB pack of the first video in place, its flow pack not; the second video's packs in place,
# its done marker not.
@pytest.mark.parametrize("fault", ["extract.move:kill:1", "extract.marker:kill:2"])
def test_a_kill_during_pack_extraction_then_a_rerun_gives_the_packs(extracted, tmp_path, fault):
    videos, _, packs = extracted
    out = tmp_path / "out"
    cmd = [sys.executable, "tools/extract_frames_flow.py", "--videos", str(videos)]
    cmd += ["--out", str(out), "--workers", "1", "--pack", *ARGS]
    done = subprocess.run(cmd, cwd=ROOT, env={**os.environ, ENV: fault}, capture_output=True)
    assert done.returncode == -9, done.stderr
    assert _snapshot(out) != _snapshot(packs)
    assert _leftovers(out)  # the killed run's folder, cleared by the next run
    assert _main(videos, out, "--pack") == 0
    assert _snapshot(out) == _snapshot(packs)
    assert not _leftovers(out)


@pytest.mark.parametrize(("root", "pack", "says"), [
    ("folders", ["--pack"], "holds frame folders; leave --pack out to continue it"),
    ("packs", [], "holds packs; add --pack to continue it"),
])  # fmt: skip
def test_packs_and_folders_are_never_mixed_in_one_root(extracted, root, pack, says):
    videos, folders, packs = extracted
    out = {"folders": folders, "packs": packs}[root]
    before = _snapshot(out)
    with pytest.raises(UserError, match=says):
        _main(videos, out, *pack)
    assert _snapshot(out) == before
