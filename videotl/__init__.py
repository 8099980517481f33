"""videotl: TokenLearner video recognition in PyTorch.

::

    import videotl
    videotl.list_models("*tokenlearner*")
    model = videotl.create_model("x2plus1d_m_tokenlearner_charades", num_classes=10)
    model = videotl.load_model("runs/c12/checkpoints/checkpoint_epoch_00050.pyth")
    prediction = videotl.predict(model, "video.mp4", top_k=5)   # prediction.top: [(name, score), ...]
"""

__version__ = "0.2.0"

from .engine.inference import load_model, predict  # noqa: E402
from .models import build_model, create_model, list_models, register_model  # noqa: E402

__all__ = ["__version__", "build_model", "create_model", "list_models", "load_model", "predict", "register_model"]
