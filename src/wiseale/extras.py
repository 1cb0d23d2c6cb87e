"""Optional dependencies: a part that needs one imports it through :func:`require`, which
names the extra to install when it is missing (one line, as every wiseale error)."""

from __future__ import annotations

import importlib
from types import ModuleType

from wiseale.errors import WisealeError

# top-level module -> (the package that installs it, the wiseale extra that names it)
EXTRAS = {"zuko": ("zuko", "flows"), "sklearn": ("scikit-learn", "sklearn"),
          "tensorboard": ("tensorboard", "tensorboard"), "h5py": ("h5py", "shapes"),
          "submitit": ("submitit", "slurm"), "ray": ("ray", "ray")}


def require(module: str, what: str) -> ModuleType:
    """``module`` imported, or a WisealeError saying that ``what`` needs its extra."""
    try:
        return importlib.import_module(module)
    except ImportError:
        package, extra = EXTRAS[module.split(".")[0]]
        raise WisealeError(f"{what} needs {package}; install it: pip install "
                           f"'wiseale[{extra}]'") from None
