"""Training and evaluation engine: ``train(cfg)``, ``test(cfg)`` and their parts."""

from .evaluator import EvalResult, evaluate, save_results
from .trainer import setup_run, test, train

__all__ = ["EvalResult", "evaluate", "save_results", "setup_run", "test", "train"]
