"""Where a stream looks: Grad-CAM (Selvaraju et al. 2017) of its test sample, with captum.

captum's ``LayerGradCam`` weighs the channels of the backbone's last convolution by the mean
gradient of one class's score and sums them: a map, per snippet, of where that class's evidence
lies. The layer is the last 2D or 3D convolution to run, found by running one snippet through the
backbone, so any CNN works without naming its layers. The score is the recognizer's whole
forward pass (normalisation, all the snippets, consensus head), as evaluation computes it.

Video transformers have no late convolution; their tokens are laid out as T x H x W maps
(token_layer): Swin3D's last stage, whose tokens the classifier averages, and MViT's input to
its last block. MViT classifies its class token alone, which reads the other tokens only in that
last block's attention: its map says which tokens that attention drew on, at 8 x 7 x 7 tokens
for 16 x 224 x 224 clips, a coarser and less direct account than a CNN's.
"""

import numpy as np
import torch
from torch import nn


def feature_layer(backbone: nn.Module, snippet: torch.Tensor) -> nn.Module:
    """The module whose output Grad-CAM reads: the last to finish, running ``snippet`` (one
    normalised input), that holds a 2D or 3D convolution and returns a feature map (the input's
    rank, more than one position). For a ResNet that is ``layer4``, its last block's output after
    the residual sum; found by running the backbone, so no layer names are needed."""
    convs = (nn.Conv2d, nn.Conv3d)
    finished = []

    def hook(module, args, out):
        if isinstance(out, torch.Tensor) and out.dim() == snippet.dim() and out[0, 0].numel() > 1:
            finished.append(module)

    hooks = [
        module.register_forward_hook(hook)
        for module in backbone.modules()
        if module is not backbone and any(isinstance(m, convs) for m in module.modules())
    ]
    try:
        with torch.no_grad():
            backbone(snippet)
    finally:
        for handle in hooks:
            handle.remove()
    if not finished:
        raise ValueError(f"{type(backbone).__name__} has no convolutional feature map to explain")
    return finished[-1]


def token_layer(backbone: nn.Module):
    """(layer, hook kind, tokens -> [N, C, T, H, W]) for a video transformer whose tokens Grad-CAM
    reads, or None for a CNN. Swin3D: its last stage's output [N, T, H, W, C]; MViT: its last
    block's input [N, 1 + T*H*W, C] (class token first) with the block's (T, H, W)."""
    kind = type(backbone).__name__
    if kind == "SwinTransformer3d":
        return backbone.features[-1], "output", lambda x, args: x.permute(0, 4, 1, 2, 3)
    if kind == "MViT":
        return (backbone.blocks[-1], "input",
                lambda x, args: x[:, 1:].unflatten(1, args[1]).permute(0, 4, 1, 2, 3))  # fmt: skip
    return None


def token_cam(model: nn.Module, video: torch.Tensor, target: int, found) -> torch.Tensor:
    """[N, 1, T, H, W] Grad-CAM of a transformer's token maps (captum reads channels first)."""
    layer, where, to_map = found
    kept = []

    def keep(module, args, out=None):
        tokens = args[0] if where == "input" else out
        tokens.retain_grad()
        kept.append((tokens, args))

    if where == "input":
        handle = layer.register_forward_pre_hook(keep)
    else:
        handle = layer.register_forward_hook(keep)
    try:
        with torch.inference_mode(False), torch.enable_grad():
            model(video)[0, int(target)].backward()
    finally:
        handle.remove()
    tokens, args = kept[-1]
    maps, grads = to_map(tokens.detach(), args), to_map(tokens.grad, args)
    weights = grads.mean(dim=(2, 3, 4), keepdim=True)
    return (weights * maps).sum(dim=1, keepdim=True).clamp_min(0)


def grad_cam(model: nn.Module, sample: torch.Tensor, target: int) -> np.ndarray:
    """[N, S, S] Grad-CAM maps (>= 0) of class ``target`` over the first crop of a test sample.

    ``sample``: ``[crops, N, C, S, S]`` (clips ``[crops, N, 3, T, S, S]``) uint8, as the
    stream's test-time sample builder makes it. A clip's map is its mean over time.
    """
    from captum.attr import LayerAttribution, LayerGradCam  # 1.3 s to import: here, not at start-up

    device = next(model.parameters()).device
    video = sample[:1].to(device)  # [1, N, ...]: the centre crop's sequence
    size = tuple(video.shape[-2:])
    model.eval()
    tokens = token_layer(model.backbone)
    # cuDNN computes no RNN gradients in eval mode; its plain kernels do.
    with torch.backends.cudnn.flags(enabled=False):
        if tokens is not None:
            maps = token_cam(model, video, target, tokens)
        else:
            layer = feature_layer(model.backbone, model.normalise(video[0, :1]))
            with torch.inference_mode(False):
                maps = LayerGradCam(model, layer).attribute(
                    video, target=int(target), relu_attributions=True
                )
    if maps.dim() == 5:  # [N, 1, T', h, w]: over time
        maps = maps.mean(dim=2)
    maps = LayerAttribution.interpolate(maps.detach(), size, interpolate_mode="bilinear")
    return maps[:, 0].clamp_min(0).float().cpu().numpy()


def sample_images(sample: torch.Tensor) -> np.ndarray:
    """[N, S, S, 3] uint8 pictures of the first crop's snippets, for the maps to lie on: the RGB
    frame, a clip's middle frame, or a flow stack's (a flow clip's middle frame's) mean magnitude
    (gray, brightest = fastest)."""
    snippets = sample[0].cpu()
    if snippets.dim() == 5:  # clips [N, C, T, S, S]: their middle frames
        snippets = snippets[:, :, snippets.shape[2] // 2]
    if snippets.shape[1] == 3:
        return snippets.permute(0, 2, 3, 1).numpy()
    flow = snippets.float() - 128.0  # x, y interleaved (dataloader.samples.FlowSampleBuilder)
    magnitude = torch.hypot(flow[:, 0::2], flow[:, 1::2]).mean(dim=1)
    gray = (255 * magnitude / magnitude.max().clamp_min(1.0)).round().to(torch.uint8)
    return gray[..., None].expand(-1, -1, -1, 3).numpy()


PICTURES = {
    "spatial": "RGB",
    "motion": "flow magnitude",
    "clip": "middle frames",
    "flow_clip": "middle flow magnitude",
}


def stream_heatmaps(streams: dict, samples: dict, target: int) -> dict:
    """{label: (pictures, maps)} of each stream's test sample for class ``target``, for
    utils.heatmaps.write_heatmaps; ``streams`` are engine.inference.StreamModel by name."""
    rows = {}
    for name, stream in streams.items():
        sample = samples[name]
        label = f"{name}: {PICTURES.get(name, 'input')}"
        rows[label] = (sample_images(sample), grad_cam(stream.model, sample, target))
    return rows
