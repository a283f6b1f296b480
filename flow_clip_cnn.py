"""Train or evaluate the flow-clip stream: a 3D network (two-stream I3D's flow half) on short
clips of TV-L1 optical flow (x and y), its first convolution made from the RGB weights by
cross-modality averaging.

    python flow_clip_cnn.py --data-root data/ucf101 [--arch r2plus1d_18] [--resume CKPT [--evaluate]]

The stream is a spec (engine/streams.py); options, training and evaluation are the engine's.
"""

from engine.cli import main
from engine.streams import FLOW_CLIP
from utils.errors import run_cli

if __name__ == "__main__":
    run_cli(lambda argv: main(FLOW_CLIP, argv))
