"""Optional dependencies: a part that needs one imports it through :func:`require`, which
names the extra to install when it is missing (one line, as every wiseale error)."""

from __future__ import annotations

import importlib
from types import ModuleType

from wiseale.errors import WisealeError

EXTRAS = {"zuko": "flows", "sklearn": "sklearn", "tensorboard": "tensorboard", "h5py": "shapes"}
PACKAGES = {"zuko": "zuko", "sklearn": "scikit-learn", "tensorboard": "tensorboard",
            "h5py": "h5py"}


def require(module: str, what: str) -> ModuleType:
    """``module`` imported, or a WisealeError saying that ``what`` needs its extra."""
    try:
        return importlib.import_module(module)
    except ImportError:
        top = module.split(".")[0]
        raise WisealeError(f"{what} needs {PACKAGES[top]}; install it: pip install "
                           f"'wiseale[{EXTRAS[top]}]'") from None
