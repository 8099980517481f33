"""Capture TokenLearner's spatial attention maps alpha_i(x) and draw them over the frames (Fig. 10).

Every tokenizer in ``videotl.models`` returns ``(tokens, maps)`` with maps of shape
(B, T, S, H, W) (``None`` when it has none); ``capture_token_maps`` records them with forward
hooks, so any model that uses those modules, at any depth, can be inspected without code changes.
"""

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from torch import nn

from ..models.tokenlearner import FixedGridTokenizer, TokenLearner, TokenLearnerV11
from ..utils.fileio import atomic_path

# Tokenizers whose maps mean something to draw (the dense and pool + MLP ones have none).
MAP_TOKENIZERS = (TokenLearner, TokenLearnerV11, FixedGridTokenizer)


@dataclass
class CapturedMaps:
    """The maps of one tokenizer module: ``name`` in the model, ``maps`` (B, T, S, H, W) on CPU."""

    name: str
    maps: torch.Tensor


def tokenizer_modules(model: nn.Module) -> List[Tuple[str, nn.Module]]:
    """The model's map-producing tokenizers, in the order of ``named_modules`` (input side first)."""
    return [(name, module) for name, module in model.named_modules() if isinstance(module, MAP_TOKENIZERS)]


@contextlib.contextmanager
def capture_token_maps(model: nn.Module) -> Iterator[List[CapturedMaps]]:
    """Record the attention maps of every TokenLearner-style module during the forward passes run
    inside the block::

        with capture_token_maps(model) as captured:
            model(clip)
        first = captured[0].maps      # (B, T, S, H, W), the first TokenLearner the clip went through

    Entries appear in execution order. Hooks are removed on exit, also after an error.
    """
    captured: List[CapturedMaps] = []
    handles = []

    def hook_for(name: str):
        def hook(_module, _inputs, output):
            if isinstance(output, tuple) and len(output) == 2 and output[1] is not None:
                captured.append(CapturedMaps(name=name, maps=output[1].detach().float().cpu()))

        return hook

    modules = tokenizer_modules(model)
    if not modules:
        raise ValueError(
            "the model has no TokenLearner-style module with attention maps (TokenLearner, TokenLearnerV11, "
            "FixedGridTokenizer): check RES5.TEMPORAL / TOKENLEARNER.TOKENIZER in its config"
        )
    for name, module in modules:
        handles.append(module.register_forward_hook(hook_for(name)))
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


def _jet(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] -> RGB uint8 with matplotlib's 'jet' colour map."""
    from matplotlib import colormaps

    return (colormaps["jet"](values)[..., :3] * 255).astype(np.uint8)


def overlay(frame: np.ndarray, attention: np.ndarray, *, alpha: float = 0.5) -> np.ndarray:
    """Blend a colour-mapped attention map (any size, upsampled bilinearly) over an RGB frame.

    The map is scaled by its own min and max so each token's pattern is visible whatever its level.
    """
    height, width = frame.shape[:2]
    resized = F.interpolate(
        torch.as_tensor(attention, dtype=torch.float32)[None, None],
        size=(height, width),
        mode="bilinear",
        align_corners=False,
    )[0, 0].numpy()
    low, high = float(resized.min()), float(resized.max())
    normalised = (resized - low) / (high - low) if high > low else np.zeros_like(resized)
    blended = (1 - alpha) * frame.astype(np.float32) + alpha * _jet(normalised).astype(np.float32)
    return blended.clip(0, 255).astype(np.uint8)


def _label(image: Image.Image, text: str) -> None:
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, 7 * len(text) + 4, 12), fill=(0, 0, 0))
    draw.text((2, 0), text, fill=(255, 255, 255))


def attention_grid(
    frames: np.ndarray,
    maps: np.ndarray,
    *,
    tokens: Sequence[int],
    frame_indices: Sequence[int],
    map_frame_indices: Optional[Sequence[int]] = None,
    frame_times: Optional[Sequence[float]] = None,
) -> Image.Image:
    """A Figure-10 style grid: the first row holds the frames, then one row per token.

    Args:
        frames: uint8 (T, H, W, 3) clip frames.
        maps: (T_map, S, h, w) attention maps of one clip (T_map may differ from T when the model
            strides in time; ``map_frame_indices`` then says which map goes with each frame).
        tokens: which of the S tokens to draw.
        frame_indices: which frames (columns) to draw.
        frame_times: optional time of each frame in seconds, written above the column.
    """
    map_frame_indices = list(map_frame_indices) if map_frame_indices is not None else list(frame_indices)
    num_tokens = maps.shape[1]
    for token in tokens:
        if not 0 <= token < num_tokens:
            raise ValueError(f"token {token} does not exist: the module learns {num_tokens} tokens per frame")
    height, width = frames.shape[1:3]
    grid = Image.new("RGB", (width * len(frame_indices), height * (len(tokens) + 1)), (0, 0, 0))
    for column, (frame_index, map_index) in enumerate(zip(frame_indices, map_frame_indices)):
        cell = Image.fromarray(frames[frame_index])
        if frame_times is not None:
            _label(cell, f"{frame_times[frame_index]:.2f}s")
        grid.paste(cell, (column * width, 0))
        for row, token in enumerate(tokens, start=1):
            cell = Image.fromarray(overlay(frames[frame_index], maps[map_index, token]))
            if column == 0:
                _label(cell, f"token {token}")
            grid.paste(cell, (column * width, row * height))
    return grid


def save_attention_animation(path, frames: np.ndarray, maps: np.ndarray, *, tokens: Sequence[int], fps: float) -> Path:
    """An animated GIF: each frame shows the clip frame and its token overlays side by side."""
    height, width = frames.shape[1:3]
    images = []
    for index in range(len(frames)):
        strip = Image.new("RGB", (width * (len(tokens) + 1), height))
        strip.paste(Image.fromarray(frames[index]), (0, 0))
        for column, token in enumerate(tokens, start=1):
            strip.paste(
                Image.fromarray(overlay(frames[index], maps[min(index, len(maps) - 1), token])), (column * width, 0)
            )
        images.append(strip)
    path = Path(path)
    with atomic_path(path) as tmp:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    return path


def save_png(image: Image.Image, path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
    return path


def clip_token_maps(model: nn.Module, inputs: torch.Tensor, *, module_index: int = 0) -> Tuple[torch.Tensor, str, int]:
    """Run ``model`` on one normalised clip (C, T, H, W) and return the attention maps
    (T, S, h, w) of its ``module_index``-th TokenLearner (in execution order), the module's name
    and how many map-producing modules ran."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), capture_token_maps(model) as captured:
            device = next(model.parameters()).device
            model(inputs.unsqueeze(0).to(device))
    finally:
        model.train(was_training)
    if not -len(captured) <= module_index < len(captured):
        raise ValueError(f"module index {module_index}: the model ran {len(captured)} TokenLearner modules")
    chosen = captured[module_index]
    return chosen.maps[0], chosen.name, len(captured)


def denormalize(inputs: torch.Tensor, *, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """Normalised (C, T, H, W) float -> uint8 (T, H, W, 3): exactly the pixels the model saw."""
    mean_t = torch.tensor(mean, dtype=inputs.dtype).view(3, 1, 1, 1)
    std_t = torch.tensor(std, dtype=inputs.dtype).view(3, 1, 1, 1)
    pixels = (inputs * std_t + mean_t).clamp(0, 1) * 255
    return pixels.round().to(torch.uint8).permute(1, 2, 3, 0).numpy()


def render_token_attention(
    model: nn.Module,
    inputs: torch.Tensor,
    *,
    out_dir,
    tokens: Sequence[int],
    mean: Sequence[float],
    std: Sequence[float],
    fps: float,
    start_sec: float = 0.0,
    module_index: int = 0,
    num_columns: int = 8,
    stem: str = "tokens",
) -> dict:
    """Draw the attention maps of one TokenLearner module for a clip: a PNG grid (tokens x
    frames, like the paper's Figure 10) and an animated GIF of the whole clip.

    Args:
        inputs: the normalised clip (C, T, H, W) exactly as the model receives it.
        tokens: which of the S tokens to draw.
        fps / start_sec: the clip's sampling, to label the columns with their time in the video.
        num_columns: frames in the grid, evenly spaced over the clip.
    Returns:
        ``{"grid": Path, "animation": Path, "module": name, "num_modules": n}``.
    """
    maps, name, count = clip_token_maps(model, inputs, module_index=module_index)
    frames = denormalize(inputs.cpu(), mean=mean, std=std)
    num_frames, num_map_frames = len(frames), maps.shape[0]
    columns = np.unique(np.linspace(0, num_frames - 1, min(num_columns, num_frames)).round().astype(int))
    # Maps come per feature frame; the X3D family keeps every input frame, others may stride.
    frame_to_map = [min(k * num_map_frames // num_frames, num_map_frames - 1) for k in range(num_frames)]
    map_columns = [frame_to_map[c] for c in columns]
    times = [start_sec + k / fps for k in range(num_frames)]
    grid = attention_grid(
        frames, maps.numpy(), tokens=tokens, frame_indices=columns, map_frame_indices=map_columns, frame_times=times
    )
    out_dir = Path(out_dir)
    grid_path = save_png(grid, out_dir / f"{stem}_grid.png")
    animation_path = save_attention_animation(
        out_dir / f"{stem}.gif", frames, maps.numpy()[frame_to_map], tokens=tokens, fps=fps
    )
    return {"grid": grid_path, "animation": animation_path, "module": name, "num_modules": count}
