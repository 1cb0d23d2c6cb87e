"""The training machinery (001 App. C, Algorithm 1): ``loop`` (train, load_run,
load_run_data), ``run`` (a run's files and :class:`~wiseale.training.run.Run`, with its one
loss-and-gradients call),
``micro_batch`` (micro-batches), ``distributed`` (torchrun), ``checkpoint`` (save and resume),
``guards`` (non-finite losses and weights), ``interrupts`` (SIGINT / SIGTERM), ``rng``
(random states) and ``callbacks`` (hooks for experiment trackers; TensorBoard)."""

from wiseale.training.callbacks import Callback, TensorBoard
from wiseale.training.loop import load_run, load_run_data, train

__all__ = ["Callback", "TensorBoard", "load_run", "load_run_data", "train"]
