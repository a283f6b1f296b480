"""The data options of the command line every stream shares: where the frames come from
(extracted ones, or video files), the split, the layout of frame folders, and sampling."""

import argparse
from dataclasses import fields

from dataloader.layout import Layout
from dataloader.splits import DATASETS
from engine.config import RECURRENT_SEGMENTS, RECURRENT_TEST_SEQUENCES, Options
from engine.streams import StreamSpec

BOOL = argparse.BooleanOptionalAction  # every switch has a --no- form, to undo a checkpoint's


def data_arguments(p, d: Options) -> None:
    data = p.add_argument_group("data")
    data.add_argument(
        "--data-root", help="folder with the extracted frames (jpegs_256/, tvl1_flow/)"
    )
    data.add_argument(
        "--videos",
        metavar="DIR",
        help="train and evaluate from the video files under DIR (<Class>/<video>.avi as UCF101 "
        "and HMDB51 unpack, or any tree) in place of --data-root, decoding the frames each "
        "sample reads; RGB streams only (motion needs flow: extract it first)",
    )
    data.add_argument(
        "--short-side",
        type=int,
        default=d.short_side,
        help="with --videos: resize decoded frames to this short side, as extraction does "
        "(0: as stored; default: %(default)s, the extraction's)",
    )
    data.add_argument(
        "--dataset",
        default=d.dataset,
        choices=DATASETS,
        help="which benchmark, or 'custom': your own classes.txt, train.txt, test.txt (README)",
    )
    data.add_argument(
        "--split",
        type=int,
        default=d.split,
        choices=(1, 2, 3),
        help="official split (not for custom)",
    )
    data.add_argument(
        "--splits-dir",
        help="folder of the split files (default: ucfTrainTestlist/, testTrainMulti_7030_splits/ "
        "or splits/, under --data-root or beside it)",
    )
    data.add_argument(
        "--val-groups",
        type=int,
        default=d.val_groups,
        help="hold out this many whole UCF101 groups (gXX) of the training list as a validation "
        "set, evaluated every epoch; keeps model_best.pth.tar by it (0: no validation set)",
    )
    data.add_argument(
        "--check-data",
        action=BOOL,
        default=d.check_data,
        help="scan every frame of the split's videos, report all problems and exit",
    )
    data.add_argument(
        "--skip-bad-videos",
        action=BOOL,
        default=d.skip_bad_videos,
        help="scan the videos first and leave unreadable ones out (listed in "
        "<record-dir>/skipped_videos.txt) instead of stopping at the first bad frame",
    )


def sampling_arguments(p, spec: StreamSpec, d: Options) -> None:
    group = p.add_argument_group("sampling")
    group.add_argument(
        "--num-segments",
        type=int,
        default=d.num_segments,
        help=f"TSN segments per training video, in time order (default: {d.num_segments}; "
        f"{RECURRENT_SEGMENTS} with --consensus lstm or gru)",
    )
    group.add_argument(
        "--test-snippets",
        "--test-frames",  # its name before, kept for old commands
        type=int,
        default=d.test_snippets,
        help="snippets per test video: frames (spatial), flow stacks (motion) or clips (clip)",
    )
    group.add_argument(
        "--test-sequences",
        type=int,
        default=d.test_sequences,
        help="test on this many sequences of --num-segments snippets, spaced as in training, at "
        "different offsets, and average their scores; 0: one sequence of --test-snippets "
        f"(default: {RECURRENT_TEST_SEQUENCES} with --consensus lstm or gru, else 0)",
    )
    follows = " for the default --arch; another arch's follows its weights" if spec.resolve else ""
    group.add_argument(
        "--crop-size",
        type=int,
        default=d.crop_size,
        help=f"network input size in pixels (default: %(default)s{follows})",
    )
    group.add_argument(
        "--ten-crop", action=BOOL, default=d.ten_crop, help="test on 10 crops of every frame"
    )
    for option in spec.options:  # the stream's own (StreamSpec.options)
        flag = "--" + option.name.replace("_", "-")
        group.add_argument(
            flag, type=type(option.default), default=option.default, help=option.help
        )
    for flag, (dest, text) in spec.aliases.items():
        value = getattr(d, dest)
        group.add_argument(flag, dest=dest, metavar="N", type=type(value), default=value, help=text)


def add_layout_arguments(p) -> None:
    """The frame layout's folders and patterns (dataloader.layout.Layout), one option each."""
    group = p.add_argument_group("frame layout (relative to --data-root)")
    for f in fields(Layout):
        flag = "--" + f.name.replace("_", "-")
        what = f.name.replace("_dir", " folder").replace("_pattern", " file pattern")
        what = what.replace("flow_x", "x-flow").replace("flow_y", "y-flow").replace("rgb", "RGB")
        group.add_argument(flag, default=f.default, help=f"{what} (default: %(default)s)")
