"""The installable product: experiments found by name, and a wheel that works outside the repo.

The wheel is built from a copy of the checkout (so no build/ or egg-info lands in the repo, and no
stale build/lib leaks deleted files into it), its file list checked, then installed ``--no-deps``
into a fresh virtual environment whose dependencies come from this one through a ``.pth`` file
(never the checkout: ``relkd.__file__`` must be inside the new venv), and run from a temporary
directory. The editable install (``pip install -e .``, as CI does) is checked the same way. The
``slow`` test installs the wheel with its dependencies from the package index, as a user would
(``pip install -c constraints.txt WHEEL``), and runs the quickstart as shipped.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from relkd.config import compose
from relkd.errors import ConfigError
from relkd.experiment_files import bundled_experiments, bundled_names, find_experiment
from tests.conftest import REPO, tiny_overrides

EXPERIMENTS = REPO / "experiments"
PACKAGES = ("relkd", "datamodules", "lightning_modules")  # the design card's import packages
# never copied for the build: outputs, caches and environments (TOP_IGNORE at the top level
# only, where runs/ is output: relkd/runs is a package)
TOP_IGNORE = {".git", ".venv", "runs", "data_cache", "build", "dist", "lightning_logs"}
ANY_IGNORE = shutil.ignore_patterns(
    "__pycache__", "*.egg-info", ".pytest_cache", ".ruff_cache", "*.ckpt"
)


# ---- finding experiments (in this, the editable, install) ----


def test_bundled_experiments_are_the_repositorys() -> None:
    assert bundled_experiments() == EXPERIMENTS.resolve()
    repo = sorted(
        p.relative_to(EXPERIMENTS).with_suffix("").as_posix() for p in EXPERIMENTS.rglob("*.yaml")
    )
    assert bundled_names() == repo
    assert {
        "base",
        "quickstart",
        "mkd/cross_encoder",
        "pipeline/quickstart",
        "ablations/mkd",
    } <= set(repo)


@pytest.mark.parametrize(
    ("name", "folder", "expected"),
    [
        ("quickstart", None, "quickstart.yaml"),
        ("quickstart.yaml", None, "quickstart.yaml"),
        ("mkd/cross_encoder", None, "mkd/cross_encoder.yaml"),
        ("experiments/mkd/cross_encoder.yaml", None, "mkd/cross_encoder.yaml"),
        ("pipeline/quickstart", None, "pipeline/quickstart.yaml"),
        ("ablations/mkd", None, "ablations/mkd.yaml"),
        ("quickstart", "pipeline", "pipeline/quickstart.yaml"),  # relkd pipeline quickstart
        ("pipeline/quickstart", "pipeline", "pipeline/quickstart.yaml"),
        ("mkd", "ablations", "ablations/mkd.yaml"),  # relkd ablate mkd
    ],
)
def test_find_experiment_by_name(
    name: str, folder: str | None, expected: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # not the repository: names, not relative paths
    assert find_experiment(name, folder) == EXPERIMENTS.resolve() / expected


def test_a_path_as_given_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    own = tmp_path / "experiments" / "quickstart.yaml"
    own.parent.mkdir()
    own.write_text("seed: 7\n")
    assert find_experiment("experiments/quickstart.yaml") == Path("experiments/quickstart.yaml")
    assert find_experiment(own) == own
    assert find_experiment("quickstart") == EXPERIMENTS.resolve() / "quickstart.yaml"  # a name
    with pytest.raises(ConfigError, match="not found"):
        find_experiment("../../../etc/passwd")  # a name never leaves the bundle


@pytest.mark.parametrize(
    ("name", "folder", "close"),
    [
        ("quickstar", None, "quickstart"),
        ("cross_encoder", None, "mkd/cross_encoder"),
        ("mdk", "ablations", "ablations/mkd"),
        ("quickstar", "pipeline", "pipeline/quickstart"),
    ],
)
def test_unknown_name_is_one_line_with_close_names(
    name: str, folder: str | None, close: str
) -> None:
    with pytest.raises(ConfigError) as info:
        find_experiment(name, folder)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{name}: experiment not found")
    assert close in message.split("close: ", 1)[1].split(", ")


def test_no_close_name_lists_the_bundle() -> None:
    with pytest.raises(ConfigError, match=r"bundled: base, quickstart, ablations/, .*mkd/") as info:
        find_experiment("zzz")
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match=r"bundled: pipeline/berm, .*pipeline/quickstart"):
        find_experiment("zzz", "pipeline")


def test_own_yaml_gets_the_bundled_base_and_extends_a_bundled_recipe(tmp_path: Path) -> None:
    own = tmp_path / "mine.yaml"
    own.write_text("extends: mkd/cross_encoder_no_kd\ntrainer:\n  max_epochs: 7\n")
    cfg = compose(own)
    assert cfg.experiment == "mine" and cfg.trainer.max_epochs == 7
    assert cfg.loss.weights.soft_kl == 0 and cfg.model.student == "cross_encoder"
    assert cfg.data.item_fields == compose("mkd/cross_encoder_no_kd").data.item_fields
    missing = tmp_path / "bad.yaml"
    missing.write_text("extends: mkd/nope\n")
    with pytest.raises(ConfigError, match=r"key extends: .*mkd/nope not found"):
        compose(missing)


def test_cli_arguments_take_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from relkd.cli import build_parser

    monkeypatch.chdir(tmp_path)
    parser = build_parser()
    bundle = EXPERIMENTS.resolve()
    assert parser.parse_args(["train", "quickstart"]).experiment == bundle / "quickstart.yaml"
    teacher = parser.parse_args(["teacher", "train", "teacher/embedded"]).experiment
    assert teacher == bundle / "teacher" / "embedded.yaml"
    assert (
        parser.parse_args(["pipeline", "quickstart"]).pipeline
        == bundle / "pipeline" / "quickstart.yaml"
    )
    assert parser.parse_args(["ablate", "mkd"]).ablation == bundle / "ablations" / "mkd.yaml"
    berm = bundle / "berm" / "qiq_iqi_k1.yaml"
    assert parser.parse_args(["graph", "build", "berm/qiq_iqi_k1"]).experiment == berm
    seminar = parser.parse_args(["sequences", "build", "seminar/pretrain"]).experiment
    assert seminar == bundle / "seminar" / "pretrain.yaml"
    # every leaf command dispatches to its own handler
    assert parser.parse_args(["graph", "build", "berm/qiq_iqi_k1"]).func.__module__ == (
        "relkd.commands.graph"
    )
    # a missing .yaml path is the command's to report; a name matching nothing is a usage error
    assert parser.parse_args(["pipeline", "p.yaml"]).pipeline == Path("p.yaml")
    with pytest.raises(SystemExit):
        parser.parse_args(["ablate", "nope"])


# ---- the wheel ----


def _run(
    cmd: list[str | Path], cwd: Path, timeout: int = 600, **kw: object
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(c) for c in cmd],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        **kw,
    )


def _ok(done: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert done.returncode == 0, f"{done.args}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def _source_copy(dst: Path) -> Path:
    def ignore(folder: str, names: list[str]) -> set[str]:
        top = TOP_IGNORE.intersection(names) if Path(folder) == REPO else set()
        return top | ANY_IGNORE(folder, names)

    shutil.copytree(REPO, dst, symlinks=True, ignore=ignore)
    return dst


@pytest.fixture(scope="module")
def built_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``python -m build --wheel`` from a copy of the checkout, without build isolation (the
    build backend comes from this environment; no registry is asked)."""
    root = tmp_path_factory.mktemp("wheel")
    src = _source_copy(root / "src")
    out = root / "dist"
    cmd = [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--skip-dependency-check"]
    _ok(_run([*cmd, "--outdir", out], cwd=src))
    (wheel,) = out.glob("relkd-*.whl")
    return wheel


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["HF_HUB_OFFLINE"] = "1"
    env["TOKENIZERS_PARALLELISM"] = "false"
    return env


def _venv(path: Path, with_pip: bool = False) -> Path:
    cmd = [sys.executable, "-m", "venv", *([] if with_pip else ["--without-pip"]), path]
    _ok(_run(cmd, cwd=path.parent))
    return path / "bin" / "python"


def _site_packages(python: Path) -> Path:
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    return Path(_ok(_run([python, "-c", code], cwd=python.parent)).stdout.strip())


def _borrow_dependencies(python: Path) -> None:
    """This environment's site-packages on the new venv's path, after its own: the wheel's
    dependencies without installing them. A .pth line only adds a folder to sys.path; the .pth
    files in it (the editable install's finder of the checkout) are not run."""
    dirs = dict.fromkeys(
        [
            *site.getsitepackages(),
            sysconfig.get_paths()["purelib"],
            sysconfig.get_paths()["platlib"],
        ]
    )
    (_site_packages(python) / "_relkd_test_dependencies.pth").write_text("\n".join(dirs) + "\n")


def _pip_install(python: Path, *args: str | Path) -> None:
    """This environment's pip, installing into the other one (``pip --python``), offline."""
    cmd = [sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index"]
    cmd += ["--ignore-installed"]  # this environment's relkd (on the borrowed path) stays put
    _ok(_run([*cmd, *args], cwd=python.parent, env=_env()))


def test_wheel_contents(built_wheel: Path) -> None:
    names = zipfile.ZipFile(built_wheel).namelist()
    top = {n.split("/", 1)[0] for n in names}
    assert top == {*PACKAGES, "relkd-0.1.0.dist-info"}, top  # no tests, notebooks, benchmarks
    top_level = zipfile.ZipFile(built_wheel).read("relkd-0.1.0.dist-info/top_level.txt").decode()
    assert sorted(top_level.split()) == sorted(PACKAGES)
    # every bundled YAML, as package data of relkd
    yamls = {
        n.removeprefix("relkd/experiments/") for n in names if n.startswith("relkd/experiments/")
    }
    assert yamls == {p.relative_to(EXPERIMENTS).as_posix() for p in EXPERIMENTS.rglob("*.yaml")}
    assert {"base.yaml", "quickstart.yaml", "pipeline/quickstart.yaml"} <= yamls
    # every module of the three packages (a subpackage the discovery missed would fail here)
    sources = {
        p.relative_to(REPO).as_posix()
        for package in PACKAGES
        for p in (REPO / package).rglob("*.py")
        if "__pycache__" not in p.parts and "experiments" not in p.relative_to(REPO).parts[1:2]
    }
    assert sources <= set(names), sorted(sources - set(names))
    assert not [n for n in names if n.endswith((".pyc", ".ipynb", ".ckpt"))]
    assert "relkd-0.1.0.dist-info/licenses/LICENSE" in names


CHECKS = r"""
import contextlib, io, json, sys
import datamodules, lightning_modules, relkd
from relkd.cli import main
from relkd.experiment_files import bundled_experiments

out = {"files": [m.__file__ for m in (relkd, datamodules, lightning_modules)],
       "bundle": str(bundled_experiments()), "path": sys.path, "runs": []}
for argv in json.loads(sys.argv[2]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code
    out["runs"].append([code, err.getvalue()])
open(sys.argv[1], "w").write(json.dumps(out))
"""


def test_wheel_installs_and_runs_quickstart_outside_the_repo(
    built_wheel: Path, tmp_path: Path
) -> None:
    python = _venv(tmp_path / "venv")
    _pip_install(python, built_wheel)
    _borrow_dependencies(python)
    venv, cwd = (tmp_path / "venv").resolve(), tmp_path / "elsewhere"
    cwd.mkdir()

    # the quickstart, by name, from a directory that is not the repository; the name checks
    # below run meanwhile (two processes paying the imports at once: half the wall time)
    overrides = tiny_overrides(
        tmp_path / "runs",
        tmp_path / "data",
        **{"data.synthetic.pairs": 300, "data.synthetic.unlabeled_ratio": 0.0},
    )
    log = tmp_path / "quickstart.log"
    with log.open("w") as out:
        quickstart = subprocess.Popen(
            [venv / "bin" / "relkd", "train", "quickstart", *overrides],
            cwd=cwd,
            env=_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        _check_installed_names(python, venv, cwd, tmp_path / "checks.json")
    except BaseException:
        quickstart.kill()
        quickstart.wait()
        raise
    assert quickstart.wait(timeout=600) == 0, log.read_text()[-3000:]
    (metrics,) = (tmp_path / "runs").glob("quickstart/*/metrics.json")
    assert "ndcg@10" in json.loads(metrics.read_text())["test"]["overall"]
    assert f"run: {metrics.parent}" in log.read_text()


def _check_installed_names(python: Path, venv: Path, cwd: Path, report: Path) -> None:
    # an unknown name: argparse's one-line error with close names, before any heavy import
    done = _run([venv / "bin" / "relkd", "train", "quickstar"], cwd=cwd, env=_env())
    errors = [line for line in done.stderr.splitlines() if "error:" in line]
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert len(errors) == 1 and "quickstar: experiment not found" in errors[0], done.stderr
    assert "close: quickstart" in errors[0]

    # names resolve in the installed bundle: each command gets as far as the config checks
    argvs = [
        ["train", "mkd/cross_encoder"],  # needs a teacher cache
        ["teacher", "train", "mkd/cross_encoder_no_kd"],  # extends: inside the bundle; a student
        ["ablate", "mkd"],  # its experiments/mkd/cross_encoder.yaml, bundled
        ["pipeline", "quickstart", "no_such.key=1"],  # its experiments/teacher/embedded.yaml
    ]
    _ok(_run([python, "-c", CHECKS, report, json.dumps(argvs)], cwd=cwd, env=_env()))
    checks = json.loads(report.read_text())
    assert all(Path(f).resolve().is_relative_to(venv) for f in checks["files"]), checks["files"]
    assert not any(Path(p).resolve() == REPO.resolve() for p in checks["path"] if p)
    bundle = checks["bundle"]
    assert Path(bundle).is_relative_to(venv) and bundle.endswith("site-packages/relkd/experiments")
    (train, teacher, ablate, pipeline) = checks["runs"]
    assert train[0] == 2 and f"{bundle}/mkd/cross_encoder.yaml: key loss.weights" in train[1]
    assert "data.teacher_cache" in train[1]
    assert teacher[0] == 2 and "task is 'student'" in teacher[1], teacher
    assert ablate[0] == 2 and f"{bundle}/ablations/mkd.yaml: key experiment:" in ablate[1], ablate
    assert f"{bundle}/mkd/cross_encoder.yaml" in ablate[1]
    assert pipeline[0] == 2 and "command line: key no_such" in pipeline[1], pipeline
    assert all(len(err.strip().splitlines()) == 1 for _, err in checks["runs"]), checks["runs"]


def test_editable_install_finds_the_checkouts_experiments(tmp_path: Path) -> None:
    """``pip install -e .`` (CI's install): names resolve to the source tree's experiments/."""
    src = _source_copy(tmp_path / "src")
    python = _venv(tmp_path / "venv")
    _borrow_dependencies(python)  # first: the build backend (setuptools) too
    _pip_install(python, "--no-build-isolation", "-e", src)
    code = "import relkd; from relkd.experiment_files import find_experiment as f; "
    code += "print(relkd.__file__); print(f('quickstart')); print(f('quickstart', 'pipeline'))"
    lines = _ok(_run([python, "-c", code], cwd=tmp_path, env=_env())).stdout.split()
    assert lines == [
        str(src / "relkd" / "__init__.py"),
        str(src.resolve() / "experiments" / "quickstart.yaml"),
        str(src.resolve() / "experiments" / "pipeline" / "quickstart.yaml"),
    ]


@pytest.mark.slow
def test_pip_install_wheel_with_dependencies_runs_quickstart(
    built_wheel: Path, tmp_path: Path
) -> None:
    """A user's install: ``pip install -c constraints.txt relkd-*.whl`` into a bare venv (every
    dependency from the package index; torch pinned to the CPU build), then the quickstart as
    shipped, shrunk only in size: no ``minilm`` extra, so it falls back to tiny-bert."""
    python = _venv(tmp_path / "venv", with_pip=True)
    venv = (tmp_path / "venv").resolve()
    pip = [python, "-m", "pip", "install", "-q", "-c", REPO / "constraints.txt", built_wheel]
    _ok(_run(pip, cwd=tmp_path, timeout=1800, env=_env()))
    _ok(_run([python, "-m", "pip", "check"], cwd=tmp_path, env=_env()))
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    overrides = [
        f"output_dir={tmp_path / 'runs'}",
        f"data.dataset_root={tmp_path / 'data' / 'datasets'}",
        f"data.cache_dir={tmp_path / 'data' / 'tokenized'}",
        "data.synthetic.pairs=300",
        "data.synthetic.unlabeled_ratio=0",
        "data.synthetic.val_pairs=0",
        "data.synthetic.test_pairs=0",
        "trainer.enable_progress_bar=false",
    ]
    done = _ok(
        _run(
            [venv / "bin" / "relkd", "train", "quickstart", *overrides],
            cwd=cwd,
            timeout=1200,
            env=_env(),
        )
    )
    (metrics,) = (tmp_path / "runs").glob("quickstart/*/metrics.json")
    assert "ndcg@10" in json.loads(metrics.read_text())["test"]["overall"]
    assert f"run: {metrics.parent}" in done.stdout
    where = _ok(_run([python, "-c", "import relkd; print(relkd.__file__)"], cwd=cwd, env=_env()))
    assert Path(where.stdout.strip()).resolve().is_relative_to(venv)
