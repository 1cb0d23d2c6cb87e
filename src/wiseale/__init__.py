"""wiseale: autoencoders that regularise the aggregate posterior (WiSE-ALE and baselines)."""

from wiseale.config import RunConfig
from wiseale.data import load
from wiseale.errors import WisealeError
from wiseale.methods import METHODS
from wiseale.metrics import evaluate
from wiseale.training import load_run, train

__version__ = "0.1.0"
__all__ = ["METHODS", "RunConfig", "WisealeError", "evaluate", "load", "load_run", "train"]
