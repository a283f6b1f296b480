"""spatial_cnn.py with every BatchNorm layer frozen (partial BN that leaves out the first too).

A batch's composition then cannot change the forward pass, so N processes x batch b train
exactly as one process x N*b: what tests/test_distributed.py checks. Run it as the script:

    python -m torch.distributed.run --nproc-per-node 2 tests/frozen_bn_main.py ARGS
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from torch import nn  # noqa: E402

from network.recognizer import Recognizer  # noqa: E402


def _all_bns(self) -> list[nn.Module]:
    return [m for m in self.backbone.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def freeze_all_bn() -> None:
    """Make --partial-bn freeze every BN layer of every Recognizer built from now on."""
    Recognizer._frozen_bns = _all_bns


if __name__ == "__main__":
    from engine.cli import main
    from engine.streams import SPATIAL
    from utils.errors import run_cli

    freeze_all_bn()
    run_cli(lambda argv: main(SPATIAL, argv))
