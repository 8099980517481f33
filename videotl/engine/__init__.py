"""Training and evaluation engine: ``train(cfg)``, ``test(cfg)`` and their parts."""

from .evaluator import EvalResult, evaluate, save_results
from .hooks import Step, StepHook
from .run import setup_run
from .state import TrainState
from .testing import test
from .trainer import train

__all__ = ["EvalResult", "Step", "StepHook", "TrainState", "evaluate", "save_results", "setup_run", "test", "train"]
