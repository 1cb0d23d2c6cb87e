"""A reproduction's training runs as units dispatched by a launcher (experiments.launchers):
the same bits as one after another, a failing unit leaves the others finished, a killed
reproduction run again resumes its units, and a missing engine is one line."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from wiseale.cli import main
from wiseale.errors import WisealeError
from wiseale.experiments import paper001
from wiseale.experiments.launchers import LocalLauncher, SubmititLauncher
from wiseale.experiments.runner import read_results
from wiseale.storage import load_tensors

TINY = {"epochs": 2, "n_train": 128, "n_test": 64}


def _tiny(runs=("aevb", "wise-ale"), **quick):
    spec = paper001.SINE
    kept = tuple(r for r in spec.runs if r.label in runs)
    return dataclasses.replace(spec, runs=kept, claims=(), quick={**spec.quick, **quick})


@pytest.fixture
def tiny_spec():
    return _tiny(**TINY)


def _evaluations(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("evaluation.json"))}


@pytest.fixture(scope="module")
def one_after_another(tmp_path_factory) -> Path:
    """The tiny spec over two seeds, its runs one after another here, with one thread."""
    out = tmp_path_factory.mktemp("sequential")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WISEALE_THREADS", "1")  # the thread count of every unit below
        _tiny(**TINY).run(out, scale="quick", seeds=2, progress=False)
    return out


@pytest.mark.parametrize("launcher", ["local", "submitit-debug"])
def test_launchers_give_the_bits_of_one_run_after_another(tmp_path, tiny_spec,
                                                          one_after_another, launcher):
    """Two seeds of two runs; Ray's and submitit's local executor's units are compared with
    a straight run in the kill test below."""
    if launcher.startswith("submitit"):
        pytest.importorskip("submitit")
        chosen = SubmititLauncher(tmp_path / "submitit", "debug",
                                  {"timeout_min": 10, "cpus_per_task": 1})
    else:
        chosen = LocalLauncher(2)
    tiny_spec.run(tmp_path / "B", scale="quick", seeds=2, progress=False, launcher=chosen,
                  threads=1)
    a, b = _evaluations(one_after_another), _evaluations(tmp_path / "B")
    assert len(a) == 4 and a == b
    means = [read_results(d, "sine")["methods"] for d in (one_after_another, tmp_path / "B")]
    assert {k: m["test"] for k, m in means[0].items()} == \
        {k: m["test"] for k, m in means[1].items()}
    assert (tmp_path / "B/runs/aevb.log").exists()  # each unit's output, beside its run


def test_a_failing_unit_leaves_the_others_finished_and_is_named(tmp_path, tiny_spec):
    runs = (tiny_spec.runs[0], dataclasses.replace(tiny_spec.runs[1], fields={
        **tiny_spec.runs[1].fields, "net": "lv-mnist"}))  # does not take sine waves
    spec = dataclasses.replace(tiny_spec, runs=runs, claims=())
    with pytest.raises(WisealeError, match="2 of 4 units failed: .*runs/wise-ale \\(WisealeError"
                       ": the lv-mnist network needs samples of shape .*; its output: .*"
                       "wise-ale.log\\).*the others finished"):
        spec.run(tmp_path, scale="quick", seeds=2, progress=False, launcher=LocalLauncher(2),
                 threads=1)
    for root in (tmp_path, tmp_path / "seeds/1"):
        assert (root / "runs/aevb/evaluation.json").exists()
        assert not (root / "runs/wise-ale/model.safetensors").exists()
    assert "needs samples of shape" in (tmp_path / "runs/wise-ale.log").read_text()


KILLED_SIZE = {"epochs": 12, "n_train": 256, "n_test": 64}
KILLED = f"KILLED_SIZE = {KILLED_SIZE!r}\n" + """
import dataclasses
import sys
from pathlib import Path
from wiseale.experiments import paper001
from wiseale.experiments.launchers import LocalLauncher, RayLauncher, SubmititLauncher
spec = dataclasses.replace(paper001.SINE, runs=paper001.SINE.runs[:1], claims=(), quick={
    **paper001.SINE.quick, **KILLED_SIZE})
if __name__ == "__main__":  # the local launcher's spawned processes import this file
    out = Path(sys.argv[1])
    launcher = {"local": lambda: LocalLauncher(1), "ray": lambda: RayLauncher(cpus=1),
                "submitit": lambda: SubmititLauncher(out / "submitit", "local", {
                    "timeout_min": 10, "cpus_per_task": 1})}[sys.argv[2]]()
    spec.run(out, scale="quick", progress=False, launcher=launcher, threads=1)
"""


def _skip_unless_ray_starts() -> None:
    """Ray needs local ports and shared memory; a machine that refuses them skips (with the
    reason), rather than failing, the test of the launcher, not of Ray."""
    started = subprocess.run(
        [sys.executable, "-c", "import ray; ray.init(num_cpus=1, include_dashboard=False, "
         "log_to_driver=False); ray.shutdown()"], capture_output=True, text=True, timeout=300)
    if started.returncode != 0:
        pytest.skip(f"Ray does not start on this machine: {started.stderr.strip()[-300:]}")


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> Path:
    """The killed script's spec trained straight through here (the same bits as a launcher's
    unit: the test above)."""
    out = tmp_path_factory.mktemp("straight")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WISEALE_THREADS", "1")
        _tiny(("aevb",), **KILLED_SIZE).run(out, scale="quick", progress=False)
    return out


@pytest.mark.parametrize("launcher", ["local", "submitit", "ray"])
def test_a_killed_reproduction_run_again_resumes_its_units_exactly(tmp_path, launcher,
                                                                   straight):
    if launcher != "local":
        pytest.importorskip(launcher)
    if launcher == "ray":
        _skip_unless_ray_starts()
    out = tmp_path / "killed"
    script = tmp_path / "reproduce.py"
    script.write_text(KILLED)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    process = subprocess.Popen([sys.executable, str(script), str(out), launcher], env=env,
                               start_new_session=True, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    checkpoint = out / "runs/aevb/checkpoint.safetensors"
    deadline = time.monotonic() + 600
    while not checkpoint.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)  # the reproduction and every unit it started
    # (Ray's task processes, in groups of their own, end with the Ray it started)
    process.wait()
    assert checkpoint.exists() and not (out / "runs/aevb/evaluation.json").exists()
    again = subprocess.run([sys.executable, str(script), str(out), launcher], env=env,
                           capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-2000:]
    a, b = (load_tensors(d / "runs/aevb/model.safetensors")[0] for d in (out, straight))
    assert all(a[k].equal(b[k]) for k in a) and _evaluations(out) == _evaluations(straight)


def test_the_plan_is_printed_and_a_dry_run_trains_nothing(tmp_path, capsys):
    assert main(["reproduce", "sine", "--quick", "--seeds", "2", "--dry-run", "--out",
                 str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert "plan: 10 training units, 10 to run" in err
    assert "seed 1  wise-ale               sine-conv    12 x 16,000  new" in err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("launcher, module", [("ray", "ray"), ("submitit", "submitit")])
def test_a_missing_engine_is_one_line_that_names_it(tmp_path, capsys, monkeypatch, launcher,
                                                    module):
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    code = main(["reproduce", "sine", "--quick", "--launcher", launcher, "--out",
                 str(tmp_path), "--no-progress"])
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert code != 0 and last.startswith("wiseale: error: ") and module in last
    assert "pip install" in last and not (tmp_path / "runs/aevb/checkpoint.safetensors").exists()


def test_jobs_with_another_launcher_is_refused(tmp_path, capsys):
    code = main(["reproduce", "sine", "--quick", "--launcher", "ray", "--jobs", "2", "--out",
                 str(tmp_path)])
    assert code != 0 and "--jobs sets the local launcher's processes" in capsys.readouterr().err


def _gpu_of_a_worker(barrier) -> str | None:
    """Run in a worker: wait until the other worker runs too, then say which GPU it sees."""
    barrier.wait(timeout=300)
    return os.environ.get("CUDA_VISIBLE_DEVICES")


def test_local_workers_are_spread_over_the_visible_gpus():
    """Two workers, two GPU ids: each worker sees one of them only, a different one each
    (the barrier holds both tasks until both workers run); more workers reuse the ids."""
    import multiprocessing

    from wiseale.experiments.launchers import gpu_per_worker

    with multiprocessing.get_context("spawn").Manager() as manager:
        barrier = manager.Barrier(2)
        with LocalLauncher(2, ("3", "5")).pool() as pool:
            seen = [pool.submit(_gpu_of_a_worker, barrier) for _ in range(2)]
            assert sorted(f.result(timeout=600) for f in seen) == ["3", "5"]
    assert gpu_per_worker(5, ("0", "1")) == ["0", "1", "0", "1", "0"]


def test_cuda_jobs_without_a_visible_gpu_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    code = main(["reproduce", "sine", "--quick", "--device", "cuda", "--jobs", "2", "--out",
                 str(tmp_path)])
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert code != 0 and last == "wiseale: error: --device cuda was asked for but no CUDA GPU " \
        "is visible; use cpu"


def test_slurm_parameters_come_from_the_toml_file_then_the_flags(tmp_path):
    """--slurm-config's table reaches submitit as written (account, partition, ...), a flag
    given beside it wins, and cpus_per_task is each unit's torch thread count."""
    from wiseale.cli import _launcher, build_parser

    config = tmp_path / "slurm.toml"
    config.write_text('slurm_partition = "gpu"\ntimeout_min = 30\nslurm_account = "lab"\n'
                      'cpus_per_task = 4\n[slurm_additional_parameters]\nqos = "long"\n')
    args = build_parser().parse_args(["reproduce", "sine", "--launcher", "submitit",
                                      "--slurm-config", str(config), "--slurm-time", "90",
                                      "--out", str(tmp_path / "out")])
    chosen = _launcher(args)
    assert chosen["threads"] == 4 and chosen["launcher"].parameters == {
        "name": "wiseale-sine", "slurm_partition": "gpu", "timeout_min": 90,
        "slurm_account": "lab", "cpus_per_task": 4,
        "slurm_additional_parameters": {"qos": "long"}}


def test_a_parameter_submitit_does_not_know_is_one_line(tmp_path, capsys):
    pytest.importorskip("submitit")
    config = tmp_path / "slurm.toml"
    config.write_text('slurm_partitio = "gpu"\n')
    code = main(["reproduce", "sine", "--quick", "--launcher", "submitit", "--cluster",
                 "debug", "--slurm-config", str(config), "--out", str(tmp_path / "out"),
                 "--no-progress"])
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert code != 0 and last.startswith("wiseale: error: submitit refused a parameter: ")
    assert "slurm_partitio" in last and not (tmp_path / "out/runs").exists()


def test_finished_runs_of_another_folder_are_reused_not_retrained(tmp_path, monkeypatch,
                                                                     one_after_another, capsys):
    """--reuse: a spec whose aevb runs another folder holds finished (same settings, same
    data) copies them, both seeds, and trains nothing; the copy leaves the lock behind."""
    import wiseale.training

    def refuse(*_, **__):
        raise AssertionError("trained a run that --reuse should have copied")

    monkeypatch.setattr(wiseale.training, "train", refuse)
    out = tmp_path / "b"
    _tiny(runs=("aevb",), **TINY).run(out, scale="quick", seeds=2, progress=False,
                                      reuse=(one_after_another,))
    for run in ("runs/aevb", "seeds/1/runs/aevb"):
        for name in ("model.safetensors", "evaluation.json", "metrics.jsonl"):
            assert (out / run / name).read_bytes() == (one_after_another / run /
                                                       name).read_bytes()
        assert not (out / run / "writer.lock").exists()
    assert f"wiseale: reused {one_after_another / 'runs/aevb'} as {out / 'runs/aevb'}" in \
        capsys.readouterr().err
    assert not list(out.rglob("*.reusing"))


def test_a_run_with_other_settings_or_data_is_not_reused(tmp_path, monkeypatch,
                                                        one_after_another):
    """Another epoch count is another run (it trains), and so is the same config on data
    with another digest."""
    import wiseale.training
    from wiseale.build import load_split
    from wiseale.experiments.reuse import reuse_finished
    from wiseale.experiments.units import plan

    class Trained(Exception):
        pass

    def trained(*_, **__):
        raise Trained

    monkeypatch.setattr(wiseale.training, "train", trained)
    with pytest.raises(Trained):
        _tiny(runs=("aevb",), **{**TINY, "epochs": 3}).run(
            tmp_path / "b", scale="quick", progress=False, reuse=(one_after_another,))
    spec = _tiny(runs=("aevb",), **TINY)
    configs = spec.configs(spec.choose_data(None), "quick", 0, None, "cpu", None)
    train, test = (load_split(next(iter(configs.values())), split) for split in ("train", "test"))
    units = plan({0: configs}, {0: tmp_path / "c"}, {0: train}, None)
    digests = {"train": train.digest(), "test": test.digest()}
    assert reuse_finished(units, (one_after_another,),
                          {0: {**digests, "train": "sha256:other"}}) == []
    assert not (tmp_path / "c/runs/aevb").exists()
    assert reuse_finished(units, (one_after_another,), {0: digests}) == [
        (units[0], one_after_another / "runs/aevb")]  # the same data: copied


def test_the_plan_lists_each_runs_measures_new_then_done(tmp_path, capsys):
    from wiseale.experiments.spec import Measure

    spec = dataclasses.replace(_tiny(**TINY), measures=(
        Measure("twice", lambda context: {"twice": 2.0}),
        Measure("only_aevb", lambda context: {"one": 1.0}, ("aevb",))))
    spec.run(tmp_path, scale="quick", progress=False, dry_run=True)
    assert "measures: 3, 3 to take (here, after the training units)\n" \
        "  seed 0  aevb                   twice new, only_aevb new\n" \
        "  seed 0  wise-ale               twice new\n" in capsys.readouterr().err
    spec.run(tmp_path, scale="quick", progress=False)
    spec.run(tmp_path, scale="quick", progress=False, dry_run=True)
    assert "measures: 3, 0 to take (here, after the training units)\n" \
        "  seed 0  aevb                   twice done, only_aevb done\n" in capsys.readouterr().err


def test_reuse_of_a_missing_folder_is_one_line_and_writes_nothing(tmp_path, capsys):
    code = main(["reproduce", "sine", "--quick", "--reuse", str(tmp_path / "nowhere"), "--out",
                 str(tmp_path / "out")])
    assert code == 1 and capsys.readouterr().err == (
        f"wiseale: error: --reuse {tmp_path / 'nowhere'} is not a folder; give experiment "
        "output folders (reproduce --out) or their parents\n")
    assert not (tmp_path / "out").exists()


def _with_measures(spec):
    """``spec`` with two measures of wiseale's own (module-level functions: they pickle for
    the spawned workers), one of them for aevb only."""
    from wiseale.experiments.measures import generalisation_gap, reconstruction_nll
    from wiseale.experiments.spec import Measure

    return dataclasses.replace(spec, measures=(
        Measure("recon_nll", reconstruction_nll),
        Measure("recon_gap", generalisation_gap, ("aevb",))))


def test_measures_run_as_units_with_the_bits_taken_here(tmp_path, one_after_another, capsys):
    """The measures of runs copied from the sequential folder (--reuse leaves measures.json
    behind) are taken by two local workers, one unit per run, and save what the same
    measures taken in this process with one thread save."""
    spec = _with_measures(_tiny(**TINY))
    here, there = tmp_path / "here", tmp_path / "there"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WISEALE_THREADS", "1")
        spec.run(here, scale="quick", seeds=2, progress=False, reuse=(one_after_another,))
    capsys.readouterr()
    import wiseale.experiments.measures

    def taken_here(*_):
        raise AssertionError("a measure was taken in the reproducing process")

    with pytest.MonkeyPatch.context() as patch:  # the spawned workers do not see this
        patch.setattr(wiseale.experiments.measures, "write_json", taken_here)
        spec.run(there, scale="quick", seeds=2, progress=False, reuse=(one_after_another,),
                 launcher=LocalLauncher(2), threads=1)
    err = capsys.readouterr().err
    assert "measures: 6, 6 to take (as units, by local, after the training units)" in err
    assert "wiseale: 4 measure units to local" in err
    for run in ("runs/aevb", "runs/wise-ale", "seeds/1/runs/aevb", "seeds/1/runs/wise-ale"):
        assert (there / f"{run}.measures.log").exists()  # taken by a unit, not here
        assert (there / run / "measures.json").read_bytes() == \
            (here / run / "measures.json").read_bytes()
    means = [read_results(d, "sine")["methods"]["aevb"]["test"] for d in (here, there)]
    assert means[0] == means[1] and "recon_gap" in means[0]


def _fails_on_wise_ale(context):
    if context.name == "wise-ale":
        raise ValueError("no measure of wise-ale")
    return {"fine": 1.0}


def test_a_failing_measure_unit_is_named_and_the_others_are_saved(tmp_path,
                                                                  one_after_another):
    pytest.importorskip("submitit")
    from wiseale.experiments.spec import Measure

    spec = dataclasses.replace(_tiny(**TINY), measures=(Measure("fine", _fails_on_wise_ale),))
    launcher = SubmititLauncher(tmp_path / "submitit", "debug", {"timeout_min": 10})
    with pytest.raises(WisealeError, match="1 of 2 measure units failed: .*runs/wise-ale "
                       "\\(ValueError: no measure of wise-ale; its output: .*wise-ale.measures"
                       ".log\\); the others finished"):
        spec.run(tmp_path / "out", scale="quick", progress=False, launcher=launcher,
                 threads=1, reuse=(one_after_another,))
    assert json.loads((tmp_path / "out/runs/aevb/measures.json").read_text())["fine"][
        "values"] == {"fine": 1.0}
    assert not (tmp_path / "out/runs/wise-ale/measures.json").exists()


ORPHAN_UNITS = '''
import os, signal, time
from pathlib import Path

def sleep(folder):
    """A unit that runs until killed (SIGTERM's default)."""
    Path(folder, "worker.pid").write_text(str(os.getpid()))
    time.sleep(600)

def stops(folder):
    """A unit that stops at SIGTERM and returns, as a training unit stops at its next step."""
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    Path(folder, "worker.pid").write_text(str(os.getpid()))
    for _ in range(6000):
        if stop:
            Path(folder, "stopped").write_text("checkpoint")
            return folder
        time.sleep(0.1)
'''
ORPHAN_PARENT = '''
import sys
sys.path.insert(0, sys.argv[1])
import orphan_units
from wiseale.experiments.launchers import LocalLauncher

class Unit:
    run_dir = log = sys.argv[1]
    def call(self):
        return getattr(orphan_units, sys.argv[2]), (sys.argv[1],)

if __name__ == "__main__":
    LocalLauncher(1).run([Unit()])
'''


def _gone(pid: int) -> bool:
    """Whether process ``pid`` has ended (exited, or a zombie nobody has reaped yet)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except (FileNotFoundError, ProcessLookupError):
        return True


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
@pytest.mark.parametrize("unit", ["sleep", "stops"])
def test_a_local_worker_ends_when_its_reproduction_is_killed(tmp_path, unit):
    """Killing only the reproducing process (SIGKILL to it alone) ends its local worker: a
    unit that handles SIGTERM stops as a training unit does (with its checkpoint), any other
    ends; without the parent watch the worker would run on, then wait for ever."""
    (tmp_path / "orphan_units.py").write_text(ORPHAN_UNITS)
    (tmp_path / "parent.py").write_text(ORPHAN_PARENT)
    parent = subprocess.Popen([sys.executable, str(tmp_path / "parent.py"), str(tmp_path),
                               unit])
    pid_file = tmp_path / "worker.pid"
    deadline = time.time() + 300
    while not pid_file.exists() or not pid_file.read_text():
        assert parent.poll() is None and time.time() < deadline, "the unit never started"
        time.sleep(0.05)
    worker = int(pid_file.read_text())
    parent.kill()
    parent.wait()
    deadline = time.time() + 120  # the watch polls every second; a busy machine is slower
    while not _gone(worker):
        if time.time() > deadline:
            os.kill(worker, signal.SIGKILL)
            pytest.fail("the worker outlived its reproduction")
        time.sleep(0.1)
    assert (tmp_path / "stopped").exists() == (unit == "stops")
