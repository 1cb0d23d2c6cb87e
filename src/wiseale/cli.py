"""The ``wiseale`` command: train | evaluate | sample | reproduce | plot | methods |
datasets | experiments."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from wiseale.config import DEVICES, KINDS, Kind, RunConfig
from wiseale.errors import WisealeError, one_line
from wiseale.experiments.index import LAUNCHERS, SCALES


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors that name the command to get help from."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")
        raise SystemExit(2)


class _Names:
    """argparse choices read from a registry on first use: building the parser imports no
    torch (give the argument a metavar, or argparse lists the choices at once)."""

    def __init__(self, module: str, attribute: str, extra: tuple[str, ...] = ()) -> None:
        self.module, self.attribute, self.extra = module, attribute, extra

    def names(self) -> list[str]:
        import importlib

        return [*getattr(importlib.import_module(self.module), self.attribute), *self.extra]

    def __contains__(self, name: object) -> bool:
        return name in self.names()

    def __iter__(self) -> Any:
        return iter(self.names())


def _reader(kind: Kind) -> Any:
    """An argparse type: ``kind.parse(text)``, then the kind's check (the one a TOML
    --config and config.json get, wiseale.config.KINDS) or a one-line error that says what
    to give."""
    def read(text: str) -> Any:
        try:
            value = kind.parse(text)
        except ValueError:
            what = "an integer" if kind.parse is int else "a number"
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        problem = kind.problem(value)
        if problem is not None:
            raise argparse.ArgumentTypeError(f"{problem}, got {text}")
        return value

    return read


_READERS = {name: _reader(kind) for name, kind in KINDS.items()}
_positive_int, _seed, _threads = (_READERS[k] for k in ("positive_int", "seed", "threads"))


def _option(text: str) -> tuple[str, Any]:
    """KEY=VALUE with VALUE read as JSON where it parses (true, 3, 0.5), else as a string."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"options are KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except (json.JSONDecodeError, RecursionError):  # RecursionError: "[[[[..." nested deeply
        return key, value


def _data_option(text: str) -> tuple[str, Any]:
    """A data-set option KEY=VALUE; the split and the data directory are not options."""
    key, value = _option(text)
    if key in ("split", "data_dir"):
        raise argparse.ArgumentTypeError(f"{key} is not a data-set option; the command sets the "
                                         "split, and --data-dir the directory")
    return key, value


def _config_flags(p: argparse.ArgumentParser) -> None:
    """A flag for every RunConfig field with flag metadata: its default, help and reading
    come from config.py (one place for each). A flag not given is absent from the parsed
    arguments, so --config and --resume can supply it (wiseale.settings)."""
    for f in dataclasses.fields(RunConfig):
        if "help" not in f.metadata:
            continue
        how = f.metadata
        kwargs: dict[str, Any] = {"help": how["help"], "default": argparse.SUPPRESS}
        if f.default is dataclasses.MISSING:
            kwargs["help"] += " (required, here or in --config)"
        elif f.default is not None:
            kwargs["help"] += f" (default: {f.default})"
        if "kind" in how:
            kwargs["type"] = _READERS[how["kind"]]
        if "choices" in how:
            kwargs["choices"] = how["choices"]
        if "registry" in how:
            kwargs["choices"], kwargs["metavar"] = _Names(*how["registry"]), "NAME"
        kwargs.update({k: how[k] for k in ("nargs", "metavar") if k in how})
        p.add_argument("--" + f.name.replace("_", "-"), **kwargs)


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train one method on one data set")
    p.add_argument("--out", required=True, type=Path, help="run directory to write")
    p.add_argument("--config", type=Path, metavar="FILE", help="a TOML file of these settings "
                   "(names as the flags': lr_schedule = \"cosine\"; [options] and "
                   "[data_options] tables); flags given here override it")
    _config_flags(p)
    p.add_argument("-o", "--option", type=_option, action="append", default=[],
                   metavar="KEY=VALUE", help="a method option (see `wiseale methods`)")
    p.add_argument("--data-option", type=_data_option, action="append", default=[],
                   metavar="KEY=VALUE", help="a data-set option, e.g. binarize=true")
    p.add_argument("--resume", action="store_true", help="continue the run in --out (after a "
                   "kill, or SIGINT / SIGTERM, which save a checkpoint and exit 130 / 143) with "
                   "the settings of its config.json; flags given override them (--epochs)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--log", choices=("none", "tensorboard"), default="none",
                   help="tensorboard: event files in OUT/tensorboard (epoch scalars, the loss "
                   "every --log-every steps, reconstructions, samples, latent histograms; "
                   "needs pip install 'wiseale[tensorboard]') (default: none)")
    p.add_argument("--log-every", type=_positive_int, default=50, metavar="N",
                   help="steps between logged losses (default: 50)")


ENVIRONMENT = """environment:
  WISEALE_DATA       where named data sets are looked for (beside --data-dir)
  WISEALE_CACHE      cache of the FID classifiers (default ~/.cache/wiseale)
  WISEALE_INCEPTION  a safetensors copy of the FID Inception weights: FIDs in its features
  WISEALE_COMPILE=0  no torch.compile kernel for the aggregate KL (native or eager instead)
  WISEALE_THREADS    torch CPU threads (default: $OMP_NUM_THREADS, else half the CPUs)"""


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="wiseale", description="Autoencoders that regularise the aggregate "
                     "posterior: train, evaluate, reproduce the papers.", epilog=ENVIRONMENT,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("--version", action="version", version=f"wiseale {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_train(sub)
    p = sub.add_parser("evaluate", help="test metrics of a run directory, as JSON")
    p.add_argument("run_dir", type=Path, help="a directory written by `wiseale train`")
    p.add_argument("--split", choices=("train", "test"), default="test",
                   help="the split to measure (default: test)")
    p.add_argument("--fid", action="store_true", help="add fid_prior, in Inception features "
                   "when $WISEALE_INCEPTION is set, else a classifier's trained once on the "
                   "data's labels")
    p.add_argument("--allow-changed-data", action="store_true", help="use the run's data "
                   "as it is now even where its digest differs from the data it was trained "
                   "on")
    p = sub.add_parser("sample", help="decode samples of a trained run (prior, flow or "
                       "mixture)")
    p.add_argument("run_dir", type=Path, help="a directory written by `wiseale train`")
    p.add_argument("--sampler", choices=("prior", "flow", "mixture"), default="prior",
                   help="flow: a MAF fitted to the training latents (003 Eq. 8-9); mixture: a "
                   "Gaussian mixture fitted to them (004 Eq. 13); either is fitted and saved "
                   "in the run directory on first use")
    p.add_argument("--components", type=_positive_int,
                   help="mixture components when the mixture is fitted (default: 32; 004: 32 "
                   "for MNIST, 500 for CelebA); a saved mixture of another size is refused")
    p.add_argument("--n", type=_positive_int, default=64,
                   help="how many samples (default: 64)")
    p.add_argument("--out", type=Path, required=True, help="a .npy file (or .png for images)")
    p.add_argument("--seed", type=_seed, default=0,
                   help="seeds the samples drawn (default: 0)")
    p.add_argument("--flow-epochs", type=_positive_int,
                   help="epochs when the flow is fitted (default: 100, 003 App. B); a saved "
                   "flow fitted for other epochs is refused")
    p.add_argument("--allow-changed-data", action="store_true", help="fit a sampler to the "
                   "run's training data as it is now even where its digest differs from the "
                   "data it was trained on")
    p = sub.add_parser("plot", help="redraw the figures of an experiment or run directory")
    p.add_argument("directory", type=Path, help="an experiment's --out, or a run directory")
    p = sub.add_parser("methods", help="list the methods and their options")
    p.add_argument("--choices", action="store_true", help="also each option's choices, read "
                   "from its part's constructor (wiseale.schema; loads torch)")
    sub.add_parser("datasets", help="list the named data sets")
    sub.add_parser("experiments", help="list the reproducible experiments")
    p = sub.add_parser("reproduce", help="reproduce a table or figure of the papers")
    p.add_argument("experiment", choices=_Names("wiseale.experiments", "EXPERIMENTS",
                                                ("all",)), metavar="EXPERIMENT",
                   help="one of `wiseale experiments`, or all: every experiment that runs "
                   "offline, each in OUT/NAME, then OUT/claims.md with every claim")
    p.add_argument("--out", required=True, type=Path,
                   help="folder for the runs, results.json, report.md and figures")
    scale = p.add_mutually_exclusive_group()
    scale.add_argument("--scale", choices=SCALES,  # None: full (given, it clashes with --quick)
                       help="quick: minutes on a CPU; medium: where the claims' regimes are "
                       "reached on 2 CPU cores, about 30 minutes a seed (docs/experiments.md); "
                       "full (the default): the paper's settings")
    scale.add_argument("--quick", action="store_const", dest="scale", const="quick",
                       help="the same as --scale quick")
    p.add_argument("--seed", type=_seed, default=0, help="the first seed")
    p.add_argument("--seeds", type=_positive_int, default=1,
                   help="train every run with this many seeds (seed, seed + 1, ...): results "
                   "are means with their sd, and each claim is judged per seed and over seeds")
    p.add_argument("--redraw-data", action="store_true",
                   help="each seed also draws its own training and test samples and "
                   "evaluation subsets (--data-seed SEED of its runs)")
    p.add_argument("--data", help="data set to use where the experiment allows a choice")
    p.add_argument("--data-dir", type=Path, help="where the experiment's data files are")
    p.add_argument("--device", choices=DEVICES, default="cpu",
                   help="where every run trains (default: cpu)")
    p.add_argument("--threads", type=_threads, metavar="N", help="torch CPU threads of "
                   "every run and fit (default: $WISEALE_THREADS, else $OMP_NUM_THREADS, else "
                   "half the CPUs; with a launcher: the CPUs / --jobs (local), 1 (ray), "
                   "cpus_per_task (submitit))")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    units = p.add_argument_group(
        "units", "the training runs, then each run's measures, are planned as units "
        "(printed with estimated times) and run one after another here, or by a launcher; "
        "each unit writes only its run directory, and the same command run again runs only "
        "what is missing "
        "(docs/experiments.md, Many machines)")
    units.add_argument("--dry-run", action="store_true", help="print the plan and stop")
    units.add_argument("--reuse", type=Path, nargs="+", metavar="DIR", default=(),
                       help="folders (other experiments' --out, or their parents) whose "
                       "finished runs are copied into the units they are the same run as "
                       "(same settings, same data), instead of training them again")
    units.add_argument("--launcher", choices=LAUNCHERS, help="local: --jobs processes on "
                       "this machine; submitit: Slurm jobs (or submitit's local/debug "
                       "executors, --cluster); ray: Ray tasks (--ray-address)")
    units.add_argument("--jobs", type=_positive_int, metavar="N", help="units at once with "
                       "the local launcher (given alone, it chooses it); each gets --threads "
                       "threads, default the CPUs / N, and with --device cuda one of the "
                       "visible GPUs in turn")
    units.add_argument("--cluster", choices=("slurm", "local", "debug"),
                       help="submitit's executor (default: Slurm where it is installed)")
    units.add_argument("--slurm-partition", help="the Slurm partition of every unit")
    units.add_argument("--slurm-time", type=_positive_int, metavar="MIN",
                       help="each unit's time limit in minutes (requeued from its checkpoint "
                       "when it runs out; default 240)")
    units.add_argument("--slurm-config", type=Path, metavar="FILE", help="a TOML file of "
                       "submitit's parameters for every unit (slurm_partition, timeout_min, "
                       "gpus_per_node, mem_gb, slurm_account, ...); the flags above win")
    units.add_argument("--gpus", type=_positive_int, metavar="N",
                       help="GPUs per unit (Slurm, Ray); use with --device cuda")
    units.add_argument("--mem-gb", type=_positive_int, metavar="GB", help="memory per unit "
                       "(Slurm)")
    units.add_argument("--ray-address", metavar="ADDR", help="an existing Ray cluster "
                       "(default: a Ray started on this machine)")
    p = sub.add_parser("claims", help="one table of every claim of the papers from experiment "
                       "output folders (experiments without results: the command to run)")
    p.add_argument("directories", type=Path, nargs="+",
                   help="experiment output folders (`reproduce --out`), or their parents")
    p.add_argument("--out", type=Path, required=True, help="a markdown file (and .json beside)")
    p.add_argument("--diagnoses", type=Path,
                   help="a TOML file of one-line diagnoses, `\"CLAIM-ID@SCALE\" = \"why\"`, "
                   "for claims that do not hold (docs/diagnoses.toml)")
    p = sub.add_parser("prepare", help="decode an image-folder data set once into uint8 .npy "
                       "files that training reads (memory-mapped when large)")
    p.add_argument("dataset", choices=("celeba",), help="the image-folder data set")
    p.add_argument("--data-dir", type=Path, required=True,
                   help="where the images are (as for `train --data-dir`)")
    p.add_argument("--out", type=Path, help="folder to write celeba-CROP-SIZE-{train,test}.npy "
                   "in (default: the images' folder); train with --data-dir pointing there")
    p.add_argument("--crop", type=_positive_int, default=178,
                   help="centre crop (178: 001 Sec. 5; 140: 003 App. B.4) (default: 178)")
    p.add_argument("--size", type=_positive_int, default=64, help="side after resizing "
                   "(default: 64; 128 for 004)")
    p.add_argument("--workers", type=_threads, help="decoding processes (default: one per "
                   "CPU)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def _prepare(args: argparse.Namespace) -> None:
    from wiseale.data.celeba import PrepareStopped, prepare_celeba

    try:
        written = prepare_celeba(args.data_dir, args.out, args.crop, args.size, args.workers,
                                 progress=not args.no_progress)
    except PrepareStopped as exc:
        sys.stderr.write(f"wiseale: {exc}\n")
        raise SystemExit(128 + exc.signum) from None
    for path in written:
        print(f"prepared: {path}")


def _version() -> str:
    from wiseale import __version__

    return __version__


def _train(args: argparse.Namespace) -> None:
    from wiseale.methods import ALIASES
    from wiseale.settings import merged, read_config_file, saved_settings
    from wiseale.training import TensorBoard, train
    from wiseale.training.interrupts import Interrupted

    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(RunConfig)
             if hasattr(args, f.name)}  # only the flags given
    given.update(options=dict(args.option), data_options=dict(args.data_option))
    saved = saved_settings(args.out) if args.resume else {}
    if saved and ALIASES.get(given.get("method"), given.get("method")) not in (
            None, saved["method"]):  # its options would be another method's
        raise WisealeError(f"{args.out} was trained with other settings (method "
                           f"{saved['method']}); resume with the same options or choose "
                           "another --out")
    settings = merged(read_config_file(args.config) if args.config else {}, saved, given)
    gamma = settings.get("lr_gamma")
    if isinstance(gamma, list) and len(gamma) == 1:
        settings["lr_gamma"] = gamma[0]
    RunConfig(**settings).validate()  # --config's values get the flags' checks, before --out
    data, data_dir = settings["data"], settings.get("data_dir")
    if data_dir is None and Path(data).suffix and Path(data).exists():
        settings["data"] = str(Path(data).resolve())  # `wiseale evaluate` works from anywhere
    if data_dir is not None:
        settings["data_dir"] = str(Path(data_dir).resolve())
    config = RunConfig(**settings)
    callbacks = [TensorBoard(every=args.log_every)] if args.log == "tensorboard" else []
    try:
        train.__wrapped__(config, args.out, resume=args.resume, progress=not args.no_progress,
                          callbacks=callbacks)  # its errors in flags, not Python arguments
    except Interrupted as exc:
        sys.stderr.write(f"wiseale: {exc}\n")
        raise SystemExit(128 + exc.signum) from None
    print(f"trained {config.method}: {args.out}/model.safetensors")


def _evaluate(args: argparse.Namespace) -> None:
    from wiseale.metrics import evaluate_full, sample_features, sample_fid
    from wiseale.metrics.evaluation import fid_count
    from wiseale.storage import strict_json
    from wiseale.training import load_run, load_run_data

    model, config = load_run.__wrapped__(args.run_dir)
    data = load_run_data.__wrapped__(args.run_dir, config, args.split,
                                     args.allow_changed_data)
    metrics = evaluate_full(model, data, data.y)
    if args.fid:
        train = load_run_data.__wrapped__(args.run_dir, config, "train",
                                          args.allow_changed_data)
        features = sample_features(train)
        metrics["fid_features"], metrics["fid_n"] = features.name, fid_count(data)
        metrics["fid_prior"] = sample_fid(model, train, data, features=features)
    print(strict_json(metrics, indent=2))


def _sample(args: argparse.Namespace) -> None:
    import io

    import numpy as np
    import torch

    from wiseale.plots import plot_sample_grid
    from wiseale.samplers import FLOW_FILE, MIXTURE_FILE, PriorSampler, run_flow, run_mixture
    from wiseale.storage import atomic_write_bytes
    from wiseale.training import load_run, load_run_data

    if args.out.suffix not in (".npy", ".png"):
        raise WisealeError(f"--out must end in .npy or .png, got {args.out.name}")
    model, config = load_run.__wrapped__(args.run_dir)
    if args.sampler == "prior":
        sampler = PriorSampler(model.latent_dim)
    else:
        file = args.run_dir / (FLOW_FILE if args.sampler == "flow" else MIXTURE_FILE)
        train_x = None if file.exists() else load_run_data.__wrapped__(
            args.run_dir, config, "train", args.allow_changed_data).floats()
        if args.sampler == "flow":
            sampler = run_flow(args.run_dir, model, train_x, epochs=args.flow_epochs,
                               seed=config.seed, progress=True)
        else:
            sampler = run_mixture(args.run_dir, model, train_x, components=args.components,
                                  seed=config.seed)
        if train_x is not None:
            print(f"fitted a {args.sampler} to {len(train_x)} training latents: {file}")
    with torch.no_grad():
        x = model.sample(args.n, torch.Generator().manual_seed(args.seed), sampler).numpy()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.out.suffix == ".png":
        if x.ndim != 4:
            raise WisealeError("--out .png draws images (N x C x H x W); use .npy for this data")
        plot_sample_grid(x, args.out, f"{args.n} {args.sampler} samples of {config.method} "
                         f"on {config.data}")
    else:
        buffer = io.BytesIO()
        np.save(buffer, x)
        atomic_write_bytes(args.out, buffer.getvalue())
    print(f"{args.n} samples ({args.sampler}): {args.out}")


def _history(path: Path) -> list[dict]:
    """The rows of a run's metrics.jsonl, checked: each has the keys of the first."""
    from wiseale.training.run import read_metrics

    rows = read_metrics(path, same_keys=True)
    if not rows:
        raise WisealeError(f"{path} is empty: no epoch has finished yet")
    return rows


def _plot(args: argparse.Namespace) -> None:
    from wiseale.experiments import EXPERIMENTS
    from wiseale.run_figures import draw_run_figures
    from wiseale.storage import read_json

    directory = args.directory
    if (directory / "results.json").is_file():
        results = read_json(directory / "results.json")
        name = results.get("experiment") if isinstance(results, dict) else None
        if name not in EXPERIMENTS:
            raise WisealeError(f"{directory}/results.json names no known experiment ({name!r})")
        try:
            figures = EXPERIMENTS[name].plot(directory)
        except (KeyError, TypeError, IndexError) as exc:  # a results.json written by hand
            raise WisealeError(f"{directory}/results.json lacks what the {name} figures need "
                               f"({type(exc).__name__}: {exc}); run `wiseale reproduce {name}` "
                               "again to rewrite it") from None
    elif (directory / "metrics.jsonl").is_file():
        figures = draw_run_figures(directory, _history(directory / "metrics.jsonl"))
    else:
        raise WisealeError(f"{directory} has neither results.json nor metrics.jsonl; give an "
                           "experiment or run directory")
    for figure in figures:
        print(figure)


def _methods(args: argparse.Namespace) -> None:
    from wiseale.methods import ALIASES, DERIVED_DEFAULTS, METHODS

    choices = _option_choices if args.choices else lambda _: {}
    for method in METHODS.values():
        aliases = [a for a, target in ALIASES.items() if target == method.name]
        alias = f" (alias {', '.join(aliases)})" if aliases else ""
        among = choices(method)
        options = ", ".join(f"{k}={DERIVED_DEFAULTS[k] if v is None else v}"
                            + (f" ({'|'.join(map(str, among[k]))})" if k in among else "")
                            for k, v in method.defaults.items())
        print(f"{method.name}{alias}: {method.summary} [{method.source}]; options: {options}")


def _option_choices(method: Any) -> dict[str, tuple[Any, ...]]:
    """option -> its choices: the Literal annotations of the constructors of the method's
    parts (its noise, regularisers and likelihoods, and the Autoencoder's own arguments)."""
    from wiseale.likelihoods import LIKELIHOOD_CLASSES
    from wiseale.model import Autoencoder
    from wiseale.noises import NOISES
    from wiseale.regularizers import REGULARIZERS
    from wiseale.schema import literal_choices

    parts = [NOISES[method.noise], *(REGULARIZERS[term] for term in method.terms),
             *(LIKELIHOOD_CLASSES[name] for name in method.likelihoods), Autoencoder]
    return {name: values for part in parts for name, values in literal_choices(part).items()
            if name in method.defaults}


def _datasets() -> None:
    from wiseale.dataset_index import DATASETS

    for name, entry in DATASETS.items():
        print(f"{name}: {entry.summary}")
    print("PATH.npy / PATH.npz: your own N x D, N x C x L or N x C x H x W array")


def _experiments() -> None:
    from wiseale.experiments.index import INDEX

    for name, listing in INDEX.items():
        print(f"{name}: {listing.summary}")


def _reproduce(args: argparse.Namespace) -> None:
    from wiseale.experiments import EXPERIMENTS
    from wiseale.experiments.summary import write_summary
    from wiseale.lock import exclusive

    data_dir = None if args.data_dir is None else str(args.data_dir.resolve())
    for folder in args.reuse:
        if not folder.is_dir():
            raise WisealeError(f"--reuse {folder} is not a folder; give experiment output "
                               "folders (reproduce --out) or their parents")
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WisealeError(f"cannot create {args.out}: {exc.strerror}; choose another "
                           "--out") from None
    with exclusive(args.out):  # one reproduce per folder (its runs lock their own)
        common = {"scale": args.scale or "full", "seed": args.seed, "seeds": args.seeds,
                  "progress": not args.no_progress, "device": args.device,
                  "redraw_data": args.redraw_data, "dry_run": args.dry_run,
                  "reuse": tuple(args.reuse),
                  **_launcher(args)}
        if args.experiment != "all":
            report = EXPERIMENTS[args.experiment].run(args.out, data=args.data,
                                                      data_dir=data_dir, **common)
            if report is not None:
                print(f"report: {report}")
            return
        for name, spec in EXPERIMENTS.items():
            if spec.offline is None:
                continue
            if args.scale == "medium" and spec.medium is None:
                print(f"{name}: left out, no medium scale: {spec.no_medium}")
                continue
            report = spec.run(args.out / name, data=spec.offline or None, **common)
            if report is not None:
                print(f"report: {report}")
        if not args.dry_run:
            print(f"claims: {write_summary([args.out], EXPERIMENTS, args.out / 'claims.md')}")


def _launcher(args: argparse.Namespace) -> dict[str, Any]:
    """reproduce's ``launcher`` and the ``threads`` of each unit, from the flags."""
    import os

    from wiseale.experiments import launchers

    name = args.launcher or ("local" if args.jobs is not None else None)
    if name != "local" and args.jobs is not None:
        raise WisealeError("--jobs sets the local launcher's processes; drop it, or use "
                           "--launcher local")
    if name is None:
        return {}
    if name == "local":
        jobs = args.jobs or 1
        threads = args.threads or max(1, (os.cpu_count() or 1) // jobs)
        gpus = launchers.visible_gpus() if args.device == "cuda" else ()
        if args.device == "cuda" and not gpus:
            raise WisealeError("--device cuda was asked for but no CUDA GPU is visible; use "
                               "cpu")
        return {"launcher": launchers.LocalLauncher(jobs, gpus), "threads": threads}
    if name == "ray":
        threads = args.threads or 1
        return {"launcher": launchers.RayLauncher(args.ray_address, threads, args.gpus or 0),
                "threads": threads}
    return _submitit(args)


SLURM_MINUTES = 240  # a unit's Slurm time limit unless --slurm-time or --slurm-config sets it


def _submitit(args: argparse.Namespace) -> dict[str, Any]:
    """The submitit launcher: its parameters from --slurm-config (TOML, submitit's names),
    then the flags; a unit's torch threads are its ``cpus_per_task`` (default 1)."""
    from wiseale.experiments import launchers
    from wiseale.settings import read_toml

    parameters: dict[str, Any] = {"timeout_min": SLURM_MINUTES,
                                  "name": f"wiseale-{args.experiment}"}
    if args.slurm_config is not None:
        parameters.update(read_toml(args.slurm_config, f"--slurm-config {args.slurm_config}"))
    flags = {"timeout_min": args.slurm_time, "slurm_partition": args.slurm_partition,
             "gpus_per_node": args.gpus, "mem_gb": args.mem_gb, "cpus_per_task": args.threads}
    parameters.update({key: value for key, value in flags.items() if value is not None})
    threads = parameters.setdefault("cpus_per_task", 1)
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise WisealeError(f"--slurm-config {args.slurm_config}: cpus_per_task must be a "
                           f"positive integer (each unit's torch threads); got {threads!r}")
    return {"launcher": launchers.SubmititLauncher(args.out / "submitit", args.cluster,
                                                   parameters), "threads": threads}


def _claims(args: argparse.Namespace) -> None:
    from wiseale.experiments import EXPERIMENTS
    from wiseale.experiments.summary import write_summary

    if args.out.suffix != ".md" or args.out.is_dir():
        raise WisealeError(f"--out must name a .md file (its .json goes beside it), not "
                           f"{str(args.out)!r}")
    print(f"claims: {write_summary(args.directories, EXPERIMENTS, args.out, args.diagnoses)}")


def _torch_oom() -> type[Exception]:
    """torch's out-of-memory error (CUDA's and the CPU allocator's), imported late: the CLI
    starts without torch."""
    import torch

    return torch.OutOfMemoryError


def _describe(exc: Exception) -> str:
    """One line for an error: a WisealeError's message, the file and reason of an OSError
    (e.g. a name too long), out of memory, else the type and message of a bug or unforeseen
    input."""
    if isinstance(exc, WisealeError):
        return one_line(exc)
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"cannot use {exc.filename}: {exc.strerror or one_line(exc)}; check the path"
    if isinstance(exc, (MemoryError, _torch_oom())) or "can't allocate memory" in str(exc):
        return (f"out of memory ({one_line(exc)}); lower --batch-size, --latent-dim or the "
                "number of samples (--n-train, --n)")
    return f"unexpected {type(exc).__name__}: {one_line(exc)} (rerun with --debug for the " \
        "traceback)"


TORCH_FREE = ("methods", "datasets", "experiments", "claims")  # commands that run no model


def _show_progress_lines() -> None:
    """wiseale's INFO log lines (a compile, a mixture or classifier fit starting) on stderr."""
    import logging

    class Stderr(logging.StreamHandler):  # sys.stderr as it is at each line, not at setup
        stream = property(lambda self: sys.stderr, lambda self, value: None)  # type: ignore

    logger = logging.getLogger("wiseale")
    if not logger.handlers:
        handler = Stderr()
        handler.setFormatter(logging.Formatter("wiseale: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def _run_with_threads(handler: Any, args: argparse.Namespace) -> None:
    """``handler(args)`` with torch's CPU threads chosen by wiseale.threads; a reproduce
    --threads reaches each of its runs through $WISEALE_THREADS."""
    from wiseale.threads import ENV, choose_threads, using_threads

    _show_progress_lines()
    asked = getattr(args, "threads", None)
    if args.command == "reproduce" and asked is not None:
        os.environ[ENV] = str(asked)
    with using_threads(choose_threads(asked)):
        handler(args)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handlers = {"train": _train, "evaluate": _evaluate, "reproduce": _reproduce,
                "claims": _claims, "plot": _plot, "sample": _sample, "prepare": _prepare,
                "methods": _methods, "datasets": lambda _: _datasets(),
                "experiments": lambda _: _experiments()}
    try:
        if args.command in TORCH_FREE:
            handlers[args.command](args)
        else:
            _run_with_threads(handlers[args.command], args)
    except BrokenPipeError:  # `wiseale datasets | head`: the reader left; stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt as exc:  # training's Interrupted carries SIGINT or SIGTERM
        sys.stderr.write(f"wiseale: {_interrupted(args)}\n")
        return 128 + getattr(exc, "signum", signal.SIGINT)
    except Exception as exc:  # one line; the traceback with --debug
        if args.debug:
            raise
        sys.stderr.write(f"wiseale: error: {_describe(exc)}\n")
        return 1
    return 0


def _interrupted(args: argparse.Namespace) -> str:
    """What an interrupt outside training's orderly stop (during start-up, a second signal)
    leaves behind, by command."""
    if args.command == "train":
        if (args.out / "checkpoint.safetensors").exists():
            return ("interrupted; the last checkpoint is kept: continue with `wiseale train "
                    f"--resume --out {args.out}`")
        return "interrupted before the run's first checkpoint: nothing to resume"
    if args.command == "reproduce":
        return ("interrupted; finished runs and checkpoints are kept: run the same `wiseale "
                "reproduce` again to continue")
    return "interrupted"


if __name__ == "__main__":
    raise SystemExit(main())
