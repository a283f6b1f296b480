"""bench/loader_bench.py, the source of the speed table (docs/speed.md), runs on a tiny dataset
and prints every figure the table takes: the decode floor, each loader's fraction of it and the
speed-up over PIL."""

import re

import pytest

from bench import loader_bench
from tests.helpers import single_thread, write_frame_dataset

one_thread = pytest.fixture(autouse=True, scope="module")(single_thread)


@pytest.mark.parametrize(
    ("stream", "floors"), [("spatial", ["full size"]), ("clip", ["full size", "half size"])]
)
def test_loader_bench_prints_the_floor_the_fractions_and_the_speed_up(
    stream, floors, tmp_path, capsys
):
    root = write_frame_dataset(tmp_path, num_classes=2, train_per_class=2, flow=False)
    argv = ["--data-root", str(root), "--stream", stream, "--crop-size", "32", "--clock", "cpu"]
    loader_bench.main([*argv, "--seconds", "0.3", "--rounds", "1", "--batch-size", "2"])
    out = capsys.readouterr().out
    assert f"{stream} stream, 8 videos, crop 32, batch 2, workers 0" in out
    for size in floors:
        assert re.search(rf"decode floor, {size} \(\d+ JPEGs a sample\) samples/s: [\d.]+", out)
        assert re.search(rf"toolkit loader samples/s: [\d.]+ \(.*[\d.]+x the {size} floor", out)
    assert re.search(r"^speed-up: [\d.]+x$", out, re.M)
    assert re.search(r"^samples/s: [\d.]+$", out.splitlines()[-1])
