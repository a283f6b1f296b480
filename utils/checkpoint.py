"""Checkpoints: written atomically, read with ``weights_only=True``, checked against the run.

A checkpoint holds plain types only (state dicts, lists, dicts, strings, numbers, tensors), so
``torch.load(weights_only=True)`` reads it without unpickling code. It carries what evaluation
needs to rebuild the model without extra flags: stream, the model's config, class names and the
training arguments.
"""

import random
from pathlib import Path

import numpy as np
import torch

from utils.atomic import atomic_write
from utils.errors import UserError

FORMAT = 2  # 2: the model's own config (network.recognizer) is saved with it


def atomic_save(obj, path) -> Path:
    """torch.save to a temp file in the same folder, then os.replace: a kill leaves the old file."""
    path = Path(path)
    with atomic_write(path) as file:
        torch.save(obj, file)
    return path


def rng_state(generator: torch.Generator | None = None) -> dict:
    """Every random generator a training epoch draws from, as tensors and numbers."""
    _, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": torch.from_numpy(np_keys.astype(np.int64)),
        "numpy_pos": int(np_pos),
        "numpy_has_gauss": int(np_has_gauss),
        "numpy_gauss": float(np_gauss),
        "python": torch.tensor(py_state, dtype=torch.int64),
        "python_version": int(py_version),
        "python_gauss": py_gauss,
    }
    if generator is not None:
        state["sampler"] = generator.get_state()
    return state


def set_rng_state(state: dict, generator: torch.Generator | None = None) -> None:
    """Restore what rng_state saved, so a resumed run draws the same numbers as an unbroken one."""
    torch.set_rng_state(state["torch"])
    if torch.cuda.is_available():  # as many GPUs as both runs have
        for device, cuda_state in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state, device)
    np.random.set_state(
        (
            "MT19937",
            state["numpy"].numpy().astype(np.uint32),
            state["numpy_pos"],
            state["numpy_has_gauss"],
            state["numpy_gauss"],
        )
    )
    random.setstate(
        (state["python_version"], tuple(state["python"].tolist()), state["python_gauss"])
    )
    if generator is not None and "sampler" in state:
        generator.set_state(state["sampler"])


def load_checkpoint(path) -> dict:
    """Read a checkpoint of this toolkit; a missing or foreign file is a UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}; give the path of a checkpoint.pth.tar")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch's message is about its own internals: say what to give
        what = "not a readable checkpoint (damaged, or another kind of file)"
        if path.suffix == ".npz":
            what = "a score file, not a checkpoint"
        raise UserError(f"{path} is {what}; give the checkpoint.pth.tar training wrote") from err
    if not isinstance(ckpt, dict) or "model" not in ckpt or "stream" not in ckpt:
        raise UserError(
            f"{path} is not a checkpoint of this toolkit (no model/stream entries); "
            "to start from plain weights use --pretrained PATH"
        )
    if ckpt.get("format") != FORMAT:
        raise UserError(
            f"{path} is a checkpoint of format {ckpt.get('format', 1)} (a development version "
            f"of this toolkit before format {FORMAT}); this version reads format {FORMAT} only: "
            "train the stream again"
        )
    return ckpt
