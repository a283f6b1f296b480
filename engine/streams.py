"""Stream specs: everything that makes a stream a stream, as data.

A stream is its name, how its samples are built from the run's options (engine.config.Options:
which frames, which channels), its input statistics, its own options (declared here, offered by
the command line) and its default hyper-parameters. The command line, trainer, inference and
fusion are the same for all; adding a stream is one spec here and one thin script.

This module imports no torch or OpenCV (the builders import them when called), so a script can
parse its options before the heavy imports.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

from dataloader.defaults import CLIP_LENGTH, CLIP_SHORT_SIDE, SAMPLE_OPTIONS, STACK_LENGTH


@dataclass(frozen=True)
class StreamOption:
    """An option of one stream only: ``options.stream[name]``, on the command line --name."""

    name: str
    default: int
    help: str


@dataclass(frozen=True)
class StreamSpec:
    name: str  # also the checkpoint's and score file's stream tag, and the record folder
    description: str
    sample_builder: Callable  # (engine.config.Options) -> dataloader.samples.SampleBuilder
    # (in_channels) -> (mean, std) on the 0..255 scale; None: RGB, the statistics of the weights
    # (network.statistics.weights_statistics)
    statistics: Callable | None = None
    defaults: dict = field(default_factory=dict)  # default hyper-parameters (engine.config)
    options: tuple[StreamOption, ...] = ()  # the stream's own options
    # Other command-line names of shared options: {flag: (option, help)}, e.g. --test-clips.
    aliases: dict = field(default_factory=dict)
    # Learning-rate multipliers per parameter group (engine.trainer.PARAM_GROUPS: first_conv,
    # weight, bias, norm); groups left out train at the base rate.
    lr_mults: dict = field(default_factory=dict)
    # The --arch family: "image" (torchvision's image models: frame streams) or "video" (its
    # video models and C3D: clip streams).
    archs: str = "image"
    # (options) -> None: checks of option combinations only this stream has (raise UserError).
    check: Callable | None = None
    # (options, given option names) -> None: fill the options that follow others and were not
    # given (a clip stream's input size follows its arch); before ``check``.
    resolve: Callable | None = None
    # (options) -> str: a line printed at start-up (what the arch expects), or None.
    about: Callable | None = None
    # Whether --videos can feed it: its samples are RGB frames, decoded from the files on demand
    # (dataloader.video_dataset); a stream of flow needs it extracted first.
    videos: bool = True


def sample_options(options) -> dict:
    """The options every stream's sample builder takes (dataloader.samples.SampleBuilder)."""
    return {k: getattr(options, k) for k in SAMPLE_OPTIONS}


def _rgb_builder(options):
    from dataloader.samples import RgbSampleBuilder

    return RgbSampleBuilder(**sample_options(options))


def _flow_builder(options):
    from dataloader.samples import FlowSampleBuilder

    return FlowSampleBuilder(stack_length=options.stream["stack_length"], **sample_options(options))


def _flow_statistics(in_channels):
    from network.statistics import flow_statistics

    return flow_statistics(in_channels)


# Defaults follow TSN's recipes. tsn-pytorch README: lr 0.001 for batch 128 (here 32 x 4
# accumulated steps), dropout 0.8 (RGB) / 0.7 (flow), steps at epochs 30/60 of 80 (RGB) and
# 190/300 of 340 (flow), gradient-norm clipping 20 (--gd 20) for both. tsn-pytorch models.py
# (get_optim_policies): biases at 2x the rate (no weight decay), the flow network's first conv
# at 5x, since its kernels are the averaged RGB ones and have most to learn.
SPATIAL = StreamSpec(
    name="spatial",
    description="a ResNet on single RGB frames",
    sample_builder=_rgb_builder,
    defaults=dict(dropout=0.8, lr=0.001, epochs=80, lr_steps=[30, 60], clip_grad=20.0),
    lr_mults=dict(first_conv=1.0, bias=2.0),
)
MOTION = StreamSpec(
    name="motion",
    description="a ResNet on stacks of TV-L1 optical flow",
    sample_builder=_flow_builder,
    statistics=_flow_statistics,
    defaults=dict(dropout=0.7, lr=0.001, epochs=340, lr_steps=[190, 300], clip_grad=20.0),
    options=(StreamOption("stack_length", STACK_LENGTH, "flow frames per stack"),),
    lr_mults=dict(first_conv=5.0, bias=2.0),
    videos=False,
)


def _clip_options(options) -> dict:
    own = options.stream
    return dict(
        clip_length=own["clip_length"],
        frame_stride=own["frame_stride"],
        short_side=own["clip_short_side"],
        **sample_options(options),
    )


def _clip_builder(options):
    from dataloader.samples import ClipSampleBuilder

    return ClipSampleBuilder(**_clip_options(options))


def _flow_clip_builder(options):
    from dataloader.samples import FlowClipSampleBuilder

    return FlowClipSampleBuilder(**_clip_options(options))


CLIP_OPTIONS = (
    StreamOption(
        "clip_length",
        CLIP_LENGTH,
        "frames per clip (default: 16, or what --arch needs: its line at start-up)",
    ),
    StreamOption("frame_stride", 1, "take every N-th frame into a clip"),
    StreamOption(
        "clip_short_side",
        CLIP_SHORT_SIDE,
        "crops are --crop-size pixels of the frame scaled to this short side ('resize to 128, "
        "crop 112'; default: the --arch weights' resize, e.g. 256 for 224 px crops)",
    ),
)


def clip_resolve(options, given) -> None:
    """A clip arch's input size, where not given: its Kinetics weights' crop and resize, and
    the stream's clip length or the arch's minimum (network.clip_inputs)."""
    from network.archs import check_clip_arch
    from network.clip_inputs import clip_input

    check_clip_arch(options.arch)
    expects = clip_input(options.arch)
    if "crop_size" not in given:
        options.crop_size = expects.crop
    for name, value in (
        ("clip_short_side", expects.short_side),
        ("clip_length", expects.clip_length),
    ):
        if name not in given:
            options.stream[name] = value


def clip_check(options) -> None:
    """Refuse a clip length or crop the arch cannot take (network.clip_inputs)."""
    from network.clip_inputs import check_clip_input

    check_clip_input(options.arch, options.stream["clip_length"], options.crop_size)


def clip_about(options) -> str:
    """The start-up line: what the arch takes (network.clip_inputs)."""
    from network.clip_inputs import clip_input

    return clip_input(options.arch).describe()


# Clips: one per training video and 10 per test video (C3D's and the torchvision video models'
# UCF101 fine-tuning); crop, short side and statistics of the arch's Kinetics weights (112 and
# 128 for the default). The lr and schedule are a starting point for fine-tuning on
# UCF101/HMDB51, not a reproduced recipe.
CLIP_TEST_CLIPS = 10
CLIP = StreamSpec(
    name="clip",
    description="a 3D network (C3D or a torchvision video model) on short RGB clips",
    sample_builder=_clip_builder,
    defaults=dict(
        arch="r2plus1d_18",
        pretrained="kinetics",
        num_segments=1,
        test_snippets=CLIP_TEST_CLIPS,
        crop_size=112,
        dropout=0.5,
        lr=0.001,
        epochs=45,
        lr_steps=[20, 40],
        batch_size=8,
        accum_steps=4,
    ),
    options=CLIP_OPTIONS,
    aliases={
        "--test-clips": (
            "test_snippets",
            "uniformly spaced clips per test video (= --test-snippets)",
        ),
    },
    lr_mults=dict(bias=2.0),
    archs="video",
    check=clip_check,
    resolve=clip_resolve,
    about=clip_about,
)
# Two-stream I3D's flow half: the clip stream's networks, sampling and recipe on clips of flow
# (x and y), with the motion stream's flow statistics and flip. The first convolution starts as
# the cross-modality average of the RGB weights' (network.first_conv), as TSN's flow network's.
FLOW_CLIP = StreamSpec(
    name="flow_clip",
    description="a 3D network (C3D or a torchvision video model) on short clips of TV-L1 flow",
    sample_builder=_flow_clip_builder,
    statistics=_flow_statistics,
    defaults=dict(CLIP.defaults),
    options=CLIP_OPTIONS,
    aliases=dict(CLIP.aliases),
    lr_mults=dict(CLIP.lr_mults),
    archs="video",
    check=clip_check,
    resolve=clip_resolve,
    about=clip_about,
    videos=False,
)
STREAMS = {spec.name: spec for spec in (SPATIAL, MOTION, CLIP, FLOW_CLIP)}
