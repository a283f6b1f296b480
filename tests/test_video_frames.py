"""Frame k read from a video file is the k-th frame sequential decoding gives (the numbering
extraction uses), in any order of reads, on the real clips and on videos with B-frames and long
GOPs, with the B-frames before a frame skipped (MPEG-4 Part 2: UCF101's and HMDB51's codec);
a video that ends early or does not decode is a DataError that --skip-bad-videos skips."""

from bisect import bisect_right

import av
import numpy as np
import pytest
from av.video.frame import PictureType

from dataloader.datasets import DataError
from dataloader.frame_size import resize_short_side
from dataloader.samples import RgbSampleBuilder
from dataloader.splits import Video
from dataloader.video_dataset import VideoDataset
from dataloader.video_frames import VideoReader, index_video, to_image
from tests.helpers import single_thread
from tests.video_files import moving_frames, write_test_video

one_thread = pytest.fixture(autouse=True, scope="module")(single_thread)

X264_B_FRAMES = {"x264-params": "bframes=3:b-adapt=0:scenecut=0"}  # B-frames in every GOP


def sequential(path, types: list | None = None) -> list[np.ndarray]:
    """Every frame of ``path`` decoded in turn, RGB; their picture types added to ``types``."""
    frames = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            frames.append(frame.to_ndarray(format="rgb24"))
            if types is not None:
                types.append(frame.pict_type)
    return frames


def check_frames(path, rng, every: bool = True) -> int:
    """Read frames in reverse, a random and a sorted random order (``every``: all frames, else
    each keyframe's and the one before it); returns how many keyframes it could seek to."""
    expected = sequential(path)
    index = index_video(path)
    assert index.num_frames == len(expected), path
    reader = VideoReader(str(path), index)
    count = len(expected)
    wanted = np.arange(count) if every else np.array([k + d for _, k in index.keyframes
                                                       for d in (-1, 0) if k + d >= 0])  # fmt: skip
    orders = [wanted[::-1], rng.permutation(wanted), np.sort(rng.integers(0, count, 5))]
    for order in orders:
        for k in map(int, order):
            got = reader.frame(k).to_ndarray(format="rgb24")
            assert np.array_equal(got, expected[k]), f"{path}: frame {k}"
    reader.close()
    return len(index.keyframes)


def b_frames(path) -> bool:
    """Whether some frame is decoded before one shown earlier (pts out of decode order)."""
    with av.open(str(path)) as container:
        pts = [p.pts for p in container.demux(video=0) if p.size]
    return pts != sorted(pts)


@pytest.mark.parametrize(
    "name, codec, gop, options",
    [
        ("h264.mp4", "libx264", 12, X264_B_FRAMES),
        ("h264.mkv", "libx264", 40, X264_B_FRAMES),  # one GOP: no keyframe to seek to
        ("vp8.webm", "libvpx", 10, None),
        ("vp9.webm", "libvpx-vp9", 15, None),
        ("mpeg4.avi", "mpeg4", 10, None),  # B-frames below: open GOPs, decoded from the start
    ],
)
def test_frame_k_is_the_kth_frame_of_sequential_decoding(tmp_path, name, codec, gop, options):
    if codec not in av.codecs_available:
        pytest.skip(f"this PyAV has no {codec} encoder")
    path = write_test_video(tmp_path / name, moving_frames(30), codec, gop, 3, options)
    keyframes = check_frames(path, np.random.default_rng(0))
    assert (keyframes == 1) == (gop >= 30 or codec == "mpeg4")  # seeks made where it can
    if codec in ("libx264", "mpeg4"):
        assert b_frames(path)


def test_frame_k_on_the_real_clips(shared_data):
    clips = sorted(shared_data.rglob("*.avi"))[::3]  # UCF101's and HMDB51's, B-frames among them
    rng = np.random.default_rng(1)
    assert sum(check_frames(path, rng, every=False) for path in clips) > len(clips)  # seeks


def test_frames_are_resized_as_extraction_resizes_and_bgr(tmp_path):
    path = write_test_video(tmp_path / "v.mp4", moving_frames(6, (64, 36)), "libx264")
    reader = VideoReader(str(path), index_video(path))
    image = to_image(reader.frame(4), 24)
    assert image.shape == (24, 42, 3)
    expected = resize_short_side(sequential(path)[4], 24)[..., ::-1]
    assert np.array_equal(image, expected)
    assert to_image(reader.frame(5), 24, half=True).shape == (12, 21, 3)
    assert np.array_equal(reader.image(4, 24), image)  # the reader's own swscale context


def test_a_video_that_ends_early_is_a_bad_video(tmp_path):
    folder = tmp_path / "videos"
    write_test_video(folder / "Good" / "good.mp4", moving_frames(12), "libx264")
    cut = write_test_video(folder / "Cut" / "cut.mp4", moving_frames(12), "libx264")
    videos = [Video("good", 0), Video("cut", 1)]
    dataset = VideoDataset(folder, videos, False, RgbSampleBuilder(test_snippets=12, crop_size=16))
    assert [item.num_frames for item in dataset.items] == [12, 12]
    data = bytearray(cut.read_bytes())
    mdat = data.index(b"mdat")
    data[mdat + 200 :] = bytes(len(data) - mdat - 200)  # frames past the first ones are zeros
    cut.write_bytes(bytes(data))
    dataset.open_videos.files.clear()
    assert dataset[0][0].shape[:2] == (1, 12)
    with pytest.raises(DataError, match=r"bad video: .*cut.mp4.*--skip-bad-videos"):
        dataset[1]
    scan = VideoDataset(folder, videos, False, dataset.builder, strict=False, cache=False)
    assert scan.problems(scan.items[0]) == []
    assert "cut.mp4" in scan.problems(scan.items[1])[0]


def counting_decodes(reader: VideoReader) -> list[int]:
    """A one-item list that counts the frames ``reader`` decodes from now on."""
    count, decoded = [0], reader._next_frame

    def next_frame():
        frame = decoded()
        count[0] += frame is not None
        return frame

    reader._next_frame = next_frame
    return count


def check_skipping(path, rng, also=()) -> None:
    """Keyframes, P- and B-frames read alone (one skipped run from the keyframe before; and the
    frames ``also``) and in sorted runs, each the k-th frame of sequential decoding, with
    B-frames left undecoded."""
    types: list = []
    expected = sequential(path, types)
    index = index_video(path)
    by_type = {t: [k for k, x in enumerate(types) if x == t] for t in set(types)}
    assert {PictureType.I, PictureType.P, PictureType.B} <= set(by_type), path
    for kind, frames in [*by_type.items(), ("also", list(also))]:
        for k in rng.choice(frames, min(3, len(frames)), replace=False).tolist() + frames[-1:]:
            reader = VideoReader(str(path), index)
            decodes = counting_decodes(reader)
            assert np.array_equal(reader.frame(k).to_ndarray(format="rgb24"), expected[k]), k
            starts = [0] + [rank for _, rank in index.keyframes]
            start = starts[bisect_right(starts, k) - 1]
            skipped = sum(x == PictureType.B for x in types[start : max(start, k - 1)])
            assert decodes[0] <= k + 2 - start - skipped, (path, kind, k)
            assert reader.skips, f"{path}: frame {k} was decoded again, counted"
    reader = VideoReader(str(path), index)
    for k in np.sort(rng.choice(len(expected), 12, replace=False)).tolist():
        assert np.array_equal(reader.frame(k).to_ndarray(format="rgb24"), expected[k]), k
    assert reader.skips


def test_b_frames_before_a_frame_are_skipped_and_it_stays_frame_k(tmp_path, shared_data):
    """UCF101's XviD clips pack a P- and a B-frame in one AVI chunk (in this clip, B-frames 24 and
    127 are decoded when the packet before the one whose pts they carry is sent); FFmpeg's
    mpeg4 encoder (in an AVI, open GOPs) does not."""
    made = write_test_video(tmp_path / "b.avi", moving_frames(40), "mpeg4", 16, 3)
    boxing = shared_data / "ucf101" / "UCF-101" / "BoxingSpeedBag"
    rng = np.random.default_rng(2)
    check_skipping(made, rng)
    check_skipping(boxing / "v_BoxingSpeedBag_g04_c04.avi", rng, also=(24, 127))


def test_frames_the_skipping_rules_cannot_place_are_decoded_again(tmp_path, monkeypatch):
    path = write_test_video(tmp_path / "b.avi", moving_frames(30), "mpeg4", 30, 3)
    expected = sequential(path)
    monkeypatch.setattr(VideoReader, "_number", lambda self, frame: -5)
    reader = VideoReader(str(path), index_video(path))
    for k in (7, 20, 29):
        assert np.array_equal(reader.frame(k).to_ndarray(format="rgb24"), expected[k])
    assert not reader.skips
