"""Pictures: token attention maps, prediction timelines, training curves."""

from .curves import plot_training_curves, read_stats
from .timeline import plot_timeline
from .token_maps import (
    CapturedMaps,
    attention_grid,
    capture_token_maps,
    clip_token_maps,
    denormalize,
    overlay,
    render_token_attention,
    save_attention_animation,
    save_png,
)
from .token_measures import (
    MOTION_THRESHOLD,
    TokenMapMeasures,
    TokenMapTally,
    map_correlation,
    measure_token_maps,
    motion_shares,
)

__all__ = [
    "MOTION_THRESHOLD",
    "CapturedMaps",
    "TokenMapMeasures",
    "TokenMapTally",
    "attention_grid",
    "capture_token_maps",
    "clip_token_maps",
    "denormalize",
    "map_correlation",
    "measure_token_maps",
    "motion_shares",
    "overlay",
    "plot_timeline",
    "plot_training_curves",
    "read_stats",
    "render_token_attention",
    "save_attention_animation",
    "save_png",
]
