"""`relkd report`: two tiny KD students (pool ratio 0 and 1, one teacher cache covering the train
pairs and half the test pairs) are reported; every section's numbers are checked against the
run's own files, omitted sections leave a note, bad input is a one-line error, and Debian's
Chromium renders the HTML with every image loaded."""

from __future__ import annotations

import json
import shutil
import subprocess
from html import unescape
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from relkd.cli import main
from relkd.config import compose
from relkd.data.canonical_dataset import CanonicalDataset
from relkd.errors import DataError
from relkd.report import build_report, collect_runs
from relkd.report.pareto_front import pareto_front
from relkd.report.teacher_agreement import teacher_agreement
from relkd.runs.dataset_resolver import resolve_dataset
from relkd.teacher_cache.teacher_cache import TeacherCache
from relkd.train import train_from_cli
from tests.conftest import QUICKSTART, tiny_overrides
from tests.v1_teacher_cache import write_v1_cache

CHROMIUM = Path("/usr/bin/chromium")
SERVING = {1: {"ms_per_pair": 0.8, "batch": 64, "threads": 2, "device": "cpu", "params": 10}}
SERVING[0] = {**SERVING[1], "ms_per_pair": 1.6}


def write_cache(root: Path, dataset: CanonicalDataset, test_share: float) -> TeacherCache:
    """A v1 cache of every train pair (the pool included) and ``test_share`` of the test pairs;
    its logits lean towards the label so the agreement matrix is not uniform."""
    t = dataset.table("pairs", ["pair_id", "split", "label"]).to_pydict()
    pid, split = np.asarray(t["pair_id"], np.int64), np.asarray(t["split"])
    test = np.flatnonzero(split == "test")
    chosen = np.concatenate([pid[split == "train"], pid[test[: int(len(test) * test_share)]]])
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(len(chosen), dataset.scheme.num_labels)).astype(np.float32)
    return write_v1_cache(
        root,
        chosen,
        logits,
        scheme=dataset.manifest.label_scheme,
        model="test/teacher",
        prompt_template="q {query} i {item}",
        dataset=dataset,
    )


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory, shared_data_root: Path) -> Path:
    """``<tmp>/runs/pool-{0,1}/version_0``, each with a serving.json, and ``<tmp>/train_only``,
    a cache of train pairs alone."""
    tmp = tmp_path_factory.mktemp("report")
    base = tiny_overrides(tmp / "runs", shared_data_root)
    dataset = CanonicalDataset(resolve_dataset(compose(QUICKSTART, base).data))
    cache = write_cache(tmp / "cache", dataset, test_share=0.5)
    write_cache(tmp / "train_only", dataset, test_share=0.0)
    for ratio in (0, 1):
        run = train_from_cli(
            QUICKSTART,
            [
                *base,
                f"experiment=pool-{ratio}",
                "loss.weights.soft_kl=1",
                f"data.teacher_cache={cache.root}",
                "data.include_unlabeled=true",
                f"data.pool_ratio={ratio}",
                "trainer.limit_train_batches=12",
            ],
        )
        (run / "serving.json").write_text(json.dumps(SERVING[ratio]))
    return tmp


@pytest.fixture(scope="module")
def report(study: Path) -> Path:
    out = study / "report"
    summary = build_report([study / "runs"], out)
    assert str(out / "report.md") in summary and str(out / "index.html") in summary
    return out


def runs_of(study: Path) -> list[Path]:
    return sorted((study / "runs").glob("pool-*/version_0"))


class Tables(HTMLParser):
    """Every <table> of a page per <section id>, as rows of cell texts; and every <img>."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tables: dict[str, list[list[list[str]]]] = {}
        self.images: list[dict[str, str | None]] = []
        self.section, self.cell = "", None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "section":
            self.section = dict(attrs)["id"] or ""
        elif tag == "table":
            self.tables.setdefault(self.section, []).append([])
        elif tag == "tr":
            self.tables[self.section][-1].append([])
        elif tag in ("td", "th"):
            self.cell = ""
        elif tag == "img":
            self.images.append({**dict(attrs), "section": self.section})

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell += data

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th"):
            self.tables[self.section][-1][-1].append(self.cell or "")
            self.cell = None


def page(report: Path) -> Tables:
    return Tables((report / "index.html").read_text())


def rows_by_header(table: list[list[str]]) -> list[dict[str, str]]:
    header, *body = table
    return [dict(zip(header, row, strict=True)) for row in body]


def test_report_lists_every_run_with_its_bucket_metrics(study: Path, report: Path) -> None:
    tables = page(report).tables
    listed = rows_by_header(tables["runs"][0])
    assert {r["run"] for r in listed} == {"runs/pool-0/version_0", "runs/pool-1/version_0"}
    buckets = {(r["run"], r["bucket"]): r for r in rows_by_header(tables["buckets"][0])}
    for run in runs_of(study):
        test = json.loads((run / "metrics.json").read_text())["test"]
        name = f"runs/{run.parent.name}/version_0"
        for group in ("overall", "head", "torso", "tail"):
            values = test["overall"] if group == "overall" else test["buckets"][group]
            row = buckets[(name, group)]
            assert row["pairs"] == str(values["num_pairs"])
            for header, key in (("NDCG@10", "ndcg@10"), ("class-acc", "class_accuracy")):
                want = "-" if values.get(key) is None else f"{values[key]:.4f}"
                assert row[header] == want, (name, group, header)
    md = (report / "report.md").read_text()
    assert "| runs/pool-0/version_0 " in md and "![" in md
    for image in page(report).images:  # the Markdown links the same PNGs as the HTML
        assert f"]({image['src']})" in md and (report / str(image["src"])).is_file()
    marker = json.loads((report / "report.json").read_text())
    assert marker["kind"] == "relkd_report" and len(marker["runs"]) == 2


def test_the_second_recipe_is_paired_against_the_first(study: Path, report: Path) -> None:
    """pool-1 against pool-0 on the same test pairs: the paired table's Δ is the difference of
    the two runs' metrics.json figures, with an interval around it."""
    first, second = runs_of(study)
    metrics = [
        json.loads((r / "metrics.json").read_text())["test"]["overall"] for r in (first, second)
    ]
    rows = rows_by_header(page(report).tables["paired"][0])
    assert len(rows) == 1 and rows[0]["recipe"].startswith("runs/pool-1/version_0 (1 seed)")
    cell = rows[0]["ΔNDCG@10"]
    delta, low, high = (
        float(x) for x in cell.replace("[", " ").replace(",", " ").replace("]", " ").split()[:3]
    )
    assert delta == pytest.approx(metrics[1]["ndcg@10"] - metrics[0]["ndcg@10"], abs=1e-4)
    assert low <= delta <= high and (("(0 in CI)" in cell) == (low <= 0 <= high))
    acc = float(rows[0]["Δclass-acc"].split()[0])
    assert acc == pytest.approx(
        metrics[1]["class_accuracy"] - metrics[0]["class_accuracy"], abs=1e-4
    )


def test_every_logged_loss_term_has_a_curve(study: Path, report: Path) -> None:
    losses = rows_by_header(page(report).tables["losses"][0])
    alt = next(i["alt"] for i in page(report).images if i["section"] == "losses")
    for run in runs_of(study):
        acc = EventAccumulator(str(run), size_guidance={"scalars": 0})
        acc.Reload()
        terms = [t for t in acc.Tags()["scalars"] if t.startswith("train/loss/")]
        assert {"train/loss/hard_ce", "train/loss/soft_kl"} <= set(terms)
        row = next(r for r in losses if r["run"].startswith(f"runs/{run.parent.name}/"))
        for tag in terms:
            assert tag in str(alt)
            last = acc.Scalars(tag)[-1].value
            assert row[tag.removeprefix("train/loss/")] == f"{last:.4f}"


def test_agreement_counts_the_pairs_in_predictions_and_cache(study: Path, report: Path) -> None:
    cache = TeacherCache.load(study / "cache", verify_hash=False)
    rows = {r["run"]: r for r in rows_by_header(page(report).tables["agreement"][0])}
    for record in collect_runs([study / "runs"]):
        preds = pq.read_table(record.path / "predictions" / "test.parquet").to_pydict()
        common = set(preds["pair_id"]) & set(cache.pair_id.tolist())
        assert 0 < len(common) < len(preds["pair_id"])  # the cache holds half the test pairs
        agreement = teacher_agreement(record)
        assert not isinstance(agreement, str)
        assert agreement.matrix.sum() == len(common) == int(rows[record.name]["pairs in both"])
        probs = np.asarray(preds["probs"])
        teacher = cache.probs[cache.align(np.asarray(preds["pair_id"]))]
        hit = np.isin(preds["pair_id"], list(common))
        same = (probs[hit].argmax(1) == teacher[hit].argmax(1)).sum()
        assert np.trace(agreement.matrix) == same
    assert (report / "agreement.png").is_file()


def test_calibration_ece_is_the_metrics_ece(report: Path) -> None:
    rows = rows_by_header(page(report).tables["calibration"][0])
    assert len(rows) == 2
    for row in rows:
        assert float(row["ECE"]) == pytest.approx(float(row["class_ece (metrics.json)"]), abs=2e-4)
    assert (report / "calibration.png").is_file()


def test_pool_curve_and_pareto_front(study: Path, report: Path) -> None:
    tables = page(report).tables
    pool = rows_by_header(tables["pool"][0])
    assert [r["data.pool_ratio"] for r in pool] == ["0", "1"] and len(
        {r["recipe"] for r in pool}
    ) == 1
    assert (report / "pool.png").is_file()
    ndcg = {
        r: json.loads((run / "metrics.json").read_text())["test"]["overall"]["ndcg@10"]
        for r, run in enumerate(runs_of(study))
    }
    pareto = {r["run"]: r for r in rows_by_header(tables["pareto"][0])}
    fast, slow = pareto["runs/pool-1/version_0"], pareto["runs/pool-0/version_0"]
    assert fast["front"] == "yes"  # the fastest is always on the front
    assert slow["front"] == ("yes" if ndcg[0] > ndcg[1] else "")
    assert fast["ms/pair"] == "0.8000" and (report / "pareto.png").is_file()


def test_what_cannot_be_shown_is_a_note_not_a_figure(study: Path, tmp_path: Path) -> None:
    """One run, no serving.json, its cache of train pairs only: no agreement, pool or Pareto
    figure, a note for each; the run's own sections are still there."""
    run = shutil.copytree(
        runs_of(study)[0], tmp_path / "one", ignore=shutil.ignore_patterns("checkpoints")
    )
    (run / "serving.json").unlink()
    config = OmegaConf.load(run / "config.yaml")
    config.data.teacher_cache = str(study / "train_only")
    OmegaConf.save(config, run / "config.yaml")
    build_report([run], tmp_path / "out")
    text = (tmp_path / "out" / "index.html").read_text()
    assert "holds none of the run&#x27;s test pairs" in text
    assert (
        "no set of runs varies data.pool_ratio" in text and "no run has both serving.json" in text
    )
    figures = sorted(p.name for p in (tmp_path / "out").glob("*.png"))
    assert figures == ["buckets.png", "calibration.png", "losses.png"]


def test_ablation_runs_are_named_by_their_results_csv(study: Path, tmp_path: Path) -> None:
    """results.csv names the runs by variant (seed added when a variant has several); its
    run_dir column is resolved under the ablation folder even when written relative elsewhere."""
    root = tmp_path / "abl" / "pool"
    lines = ["variant,seed,split,group,ndcg@10,run_dir"]
    for ratio, run in enumerate(runs_of(study)):
        target = root / f"data-pool-ratio-{ratio}" / "abc"
        shutil.copytree(run, target, ignore=shutil.ignore_patterns("checkpoints"))
        lines.append(
            f"data.pool_ratio={ratio},0,test,overall,0.5,elsewhere/pool/{target.parent.name}/abc"
        )
    (root / "results.csv").write_text("\n".join(lines) + "\n")
    names = [r.name for r in collect_runs([tmp_path / "abl"])]
    assert names == ["data.pool_ratio=0", "data.pool_ratio=1"]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp: tmp / "missing", "no such folder"),
        (lambda tmp: tmp, "no run folders under it"),
    ],
)
def test_bad_paths_are_one_line_errors(
    tmp_path: Path, make, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = make(tmp_path / "in")
    (tmp_path / "in").mkdir()
    assert main(["report", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(path) in err and message in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("file", "content", "message"),
    [
        ("metrics.json", "{not json", "not valid JSON"),
        ("metrics.json", '{"test": [1]}', "key test"),
        ("serving.json", '{"ms_per_pair": "fast"}', "key ms_per_pair"),
    ],
)
def test_corrupt_run_files_are_one_line_errors(
    study: Path, tmp_path: Path, file: str, content: str, message: str, capsys
) -> None:
    run = shutil.copytree(
        runs_of(study)[0], tmp_path / "run", ignore=shutil.ignore_patterns("checkpoints")
    )
    (run / file).write_text(content)
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(run / file) in err and message in err


def test_out_replaces_a_report_but_never_another_folder(
    study: Path, report: Path, tmp_path: Path
) -> None:
    run = runs_of(study)[0]
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "keep.txt").write_text("mine")
    with pytest.raises(DataError, match="is not a relkd report folder"):
        build_report([run], precious)
    assert sorted(p.name for p in precious.iterdir()) == ["keep.txt"]
    out = shutil.copytree(report, tmp_path / "out")  # an earlier report of two runs
    (out / "stale.png").write_text("from an older report")
    build_report([run], out)  # our own report is replaced whole
    assert not (out / "stale.png").exists() and not (out / "pool.png").exists()
    assert len(json.loads((out / "report.json").read_text())["runs"]) == 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left


_PROBE = """<script>
window.addEventListener("load", () => {
  const found = [...document.images].map((img) => ({
    src: img.getAttribute("src"),
    section: img.closest("section") ? img.closest("section").id : "",
    loaded: img.complete && img.naturalWidth > 0,
  }));
  const out = document.createElement("pre");
  out.id = "image-probe";
  out.textContent = JSON.stringify(found);
  document.body.appendChild(out);
});
</script>"""


def test_chromium_renders_every_image(report: Path, tmp_path: Path) -> None:
    if not CHROMIUM.is_file():
        pytest.fail(
            f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium)"
        )
    site = shutil.copytree(report, tmp_path / "site")
    html = (site / "index.html").read_text()
    (site / "probe.html").write_text(html.replace("</body>", f"{_PROBE}</body>"))
    cmd = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=5000",
        "--dump-dom",
        (site / "probe.html").as_uri(),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    probe = Tables(done.stdout)
    dumped = done.stdout.split('<pre id="image-probe">', 1)
    assert len(dumped) == 2, "the probe script did not run: " + done.stdout[:500]
    images = json.loads(unescape(dumped[1].split("</pre>", 1)[0]))
    assert images and all(i["loaded"] for i in images), images
    sections = {i["section"] for i in images}
    assert sections == {"buckets", "losses", "agreement", "calibration", "pool", "pareto"}
    assert len(probe.images) == len(images)


def test_pareto_front_keeps_the_runs_nothing_beats() -> None:
    latency = np.array([0.8, 1.6, 1.2, 3.0, 1.2, 3.0])
    quality = np.array([0.52, 0.48, 0.53, 0.60, 0.53, 0.55])
    front = pareto_front(latency, quality)
    # 1.6 ms / 0.48 is beaten by 0.8 ms / 0.52; 3.0 / 0.55 by 3.0 / 0.60; equal points both stay
    assert front.tolist() == [True, False, True, True, True, False]


def test_a_study_folder_gets_importances_and_history(tmp_path: Path) -> None:
    """A study whose objective depends on x alone: fANOVA gives x nearly all the importance,
    the history marks the best so far, and a study folder whose trials never finished a run is
    still reported."""
    import optuna

    folder = tmp_path / "studies" / "s"
    folder.mkdir(parents=True)
    url = f"sqlite:///{folder / 'study.db'}"
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(
        study_name="s", storage=url, direction="maximize", sampler=optuna.samplers.RandomSampler(0)
    )
    study.set_metric_names(["val/ndcg@10"])

    def objective(trial: optuna.Trial) -> float:
        x, y = trial.suggest_float("x", 0, 1), trial.suggest_float("y", 0, 1)
        trial.report(x / 2, 0)
        if trial.number == 3:
            raise optuna.TrialPruned()
        return x + 0.001 * y

    study.optimize(objective, n_trials=12)
    # as relkd tune writes it, run from the study's parent folder: a relative SQLite path
    (folder / "trials.md").write_text("# Study s\n\nstorage: `sqlite:///studies/s/study.db`\n")
    out = tmp_path / "report"
    build_report([tmp_path / "studies"], out)
    tables = page(out).tables["study-s"]
    shares = {
        row["parameter"]: float(row["importance (fANOVA)"]) for row in rows_by_header(tables[0])
    }
    assert set(shares) == {"x", "y"} and shares["x"] > 0.9 > shares["y"]
    best = study.best_trial
    markdown = (out / "report.md").read_text()
    assert f"best: trial {best.number}, val/ndcg@10 = {best.value:.4f}" in markdown
    assert "11 complete, 1 pruned" in markdown
    assert (out / "study-s.png").stat().st_size > 0
    marker = json.loads((out / "report.json").read_text())
    assert marker["studies"][0]["name"] == "s" and "study-s.png" in marker["figures"]
