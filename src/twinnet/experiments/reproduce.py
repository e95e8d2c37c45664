"""``reproduce``: the course's whole assignment from one command, and one report for it.

Every experiment the course asks for runs as a job of the sweep runner (each a complete run directory
of its own, resumable), grouped as the assignment is: the MLP (part 1), the CNN (part 2), the RNN
(part 3), and the engine checks. The report (report.md and a self-contained report.html) holds each
part's runs, their figures, tables and analysis as their own reports show them, under a table of the
headline figures; ``twinnet reproduce`` is the command (``twinnet run reproduce`` the same). A folder
still running, or stopped, reports what it has finished so far (``twinnet report OUT``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

from twinnet.config import BaseConfig, check_unique, comma_items
from twinnet.registry import Experiment, get_experiment, register
from twinnet.report.blocks import Section, Table, Text, relocated
from twinnet.runs import CONFIG, REPORT, SUMMARY, RunDir
from twinnet.sweep import Job, run_sweep

# part -> (title, [(job key, experiment, settings on top of its preset)])
PARTS: dict[str, tuple[str, list[tuple[str, str, dict]]]] = {
    "mlp": ("Part 1: the MLP, NumPy against PyTorch, on toy data and on CIFAR-10", [
        ("mlp-compare", "mlp-compare", {}),
        ("mlp-cifar", "engine-compare", {"preset": "mlp-cifar"}),  # the course's MLP on CIFAR-10, both engines
        ("mlp-cifar-best", "mlp-cifar-best", {}),
    ]),
    "cnn": ("Part 2: the CNN, the reduced VGG, its curves and its improvements", [
        ("cnn-vgg", "engine-compare", {"preset": "cnn-vgg"}),  # in both engines, from the same weights
        ("cnn-ablation", "cnn-ablation", {}),
        ("cnn-vgg-best", "cnn-vgg-best", {}),
        ("cnn-mnist", "cnn-mnist", {}),
        ("mnist-numpy", "mnist-numpy", {}),
    ]),
    "rnn": ("Part 3: the RNN, accuracy against palindrome length", [
        ("palindrome-sweep", "palindrome-sweep", {}),
        ("palindrome-sweep-best", "palindrome-sweep-best", {}),
        ("rnn-gradients", "rnn-gradients", {}),
        ("rnn-engines", "engine-compare", {"preset": "palindrome"}),  # the course's RNN, T=5, in both engines
    ]),
    "engine": ("The engine: the NumPy networks against PyTorch's", [
        ("engine-check", "engine-check", {}),
    ]),
}
# headings of the runs whose experiment's own description would not say what they are
TITLES = {"mlp-cifar": "the course's MLP on CIFAR-10, trained as the course set it, in both engines from the same "
                       "weights on the same batches",
          "cnn-vgg": "the course's reduced VGG on CIFAR-10, trained as the course set it, in both engines from the "
                     "same weights on the same batches",
          "rnn-engines": "the course's vanilla RNN on palindromes of length 5, in both engines from the same weights "
                         "on the same batches"}
# Each job's relative wall time: minutes on the 2-core AVX2 machine in float32 (docs/RESULTS.md: measured, or
# projected from its images/s: the reduced VGG trains 66 images/s there, each ablation rung 10 epochs), so that the
# sweep starts the longest first and its time left weighs a 10-second run and a 20-hour one as they are; only
# their ratios matter. A --quick run's jobs are all a few seconds: equal.
COSTS = {"mlp-compare": 0.1, "mlp-cifar": 8, "mlp-cifar-best": 36, "cnn-vgg": 80, "cnn-ablation": 1270,
         "cnn-vgg-best": 190, "cnn-mnist": 50, "mnist-numpy": 7, "palindrome-sweep": 420, "palindrome-sweep-best": 7,
         "rnn-gradients": 1, "rnn-engines": 1, "engine-check": 0.2}
# --full: the headline presets again with seeds 1 and 2 (mean ± std over 3 with the first run's seed 0), and the
# improvement ladder with seed 1 (each rung over 2 seeds; its top, trained longer, is cnn-vgg-best's 3): key ->
# (its part, the seed offsets added)
FULL_SEEDS = {"mlp-cifar-best": ("mlp", (1, 2)), "cnn-ablation": ("cnn", (1,)), "cnn-vgg-best": ("cnn", (1, 2)),
              "cnn-mnist": ("cnn", (1, 2)), "mnist-numpy": ("cnn", (1, 2))}


def seed_key(key: str, offset: int) -> str:
    """The job key of a headline preset's run at seed + ``offset`` (--full)."""
    return f"{key}-seed{offset}"


@dataclass(frozen=True)
class ReproduceConfig(BaseConfig):
    resumable: ClassVar[bool] = True  # finished runs are kept; stopped ones continue from their checkpoints
    resume_may_change: ClassVar[frozenset[str]] = frozenset({"parts", "level", "verify"})  # adds runs
    resume_adds: ClassVar[frozenset[str]] = frozenset({"parts"})  # a resume's parts join the folder's

    parts: str = "mlp,cnn,rnn,engine"  # comma-separated: mlp, cnn, rnn, engine
    level: Literal["standard", "full"] = "standard"  # full: the headline presets with 3 seeds, the ladder with 2
    verify: bool = True  # check MNIST and CIFAR-10 against their official checksums (each image run's verify)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_unique("parts", self.listed())
        unknown = [p for p in self.names() if p not in PARTS]
        if unknown or not self.names():
            raise ValueError(f"unknown part(s) {', '.join(unknown) or '(none given)'}; choose from "
                             f"{', '.join(PARTS)}")

    def listed(self) -> list[str]:
        """The parts as given, in their order."""
        return comma_items(self.parts)

    def names(self) -> list[str]:
        chosen = set(self.listed())
        return [p for p in PARTS if p in chosen] + sorted(chosen - set(PARTS))

    def jobs(self, quick: bool = False) -> list[tuple[str, Job]]:
        """(part, job) for every run of the chosen parts, in the report's order."""
        import dataclasses

        out = []
        for part in self.names():
            for key, experiment, values in PARTS[part][1]:
                fields = {f.name for f in dataclasses.fields(get_experiment(experiment).config_cls)}
                values = {**values, **({"verify": self.verify} if "verify" in fields and not self.verify else {})}
                cost = 1.0 if quick else COSTS.get(key, 1.0)
                out.append((part, Job(key, experiment, values=dict(values), quick=quick, seed=self.seed,
                                      labels={"part": part, "experiment": experiment}, cost=cost)))
                if self.level == "full" and FULL_SEEDS.get(key, ("", ()))[0] == part:
                    out += [(part, Job(seed_key(key, s), experiment, values=dict(values), quick=quick,
                                       seed=self.seed + s, labels={"part": part, "experiment": experiment},
                                       cost=cost)) for s in FULL_SEEDS[key][1]]
        return out


def check_data(jobs: list[Job], data_dir: Path | None) -> None:
    """Before anything trains: every job's settings hold at its own seed (--full adds runs at --seed + 1 and
    + 2), and every dataset the jobs read can be found (a one-line error naming the part to leave out
    otherwise)."""
    from twinnet import TwinnetError
    from twinnet.data import cifar, mnist
    from twinnet.runner import resolve_config

    needed: dict[str, list[str]] = {}
    for j in jobs:
        try:
            cfg = resolve_config(j.experiment, quick=j.quick, values={**j.values, "seed": j.seed})
        except TwinnetError as e:
            raise TwinnetError(f"the run {j.key} at seed {j.seed}: {e}") from None
        dataset = getattr(cfg, "dataset", None)
        if dataset in ("mnist", "cifar10"):
            needed.setdefault(dataset, []).append(j.key)
    for dataset, keys in needed.items():
        try:
            cifar._find_source(data_dir, download=False) if dataset == "cifar10" else mnist._find_files(mnist._MNIST,
                                                                                                      data_dir)
        except TwinnetError as e:
            raise TwinnetError(f"{e} ({', '.join(keys)} read it: pass --data-dir, or leave their part out with "
                               "--parts)") from None


def run(cfg: ReproduceConfig, run_dir: RunDir, ctx) -> dict:
    jobs = cfg.jobs(ctx.quick)
    check_data([j for _, j in jobs], ctx.data_dir)
    done = run_sweep(run_dir, [j for _, j in jobs], threads=ctx.threads, command=ctx.command, data=ctx.data_dir,
                     name="reproduce")
    return _summary(run_dir.path, jobs, {k: d["summary"] for k, d in done.items()})


def _summary(path: Path, jobs: list[tuple[str, Job]], done: dict[str, dict]) -> dict:
    """The summary of the jobs finished (``done``: job key -> its run's summary); ``pending`` lists the rest."""
    return {"runs": [{"job": j.key, "part": part, "experiment": j.experiment, "seed": j.seed,
                      "headline": _headline(path / j.key, done[j.key])} for part, j in jobs if j.key in done],
            "over_seeds": _over_seeds([j for _, j in jobs if j.key in done], done),
            **({"pending": [{"job": j.key, "part": part, "experiment": j.experiment, "seed": j.seed}
                            for part, j in jobs if j.key not in done],
                "order": [j.key for _, j in jobs]} if len(done) < len(jobs) else {})}


def progress(path: Path) -> dict:
    """The summary of a reproduce folder that has not finished (stopped, or still running): its finished
    runs, each read from its own folder, and the runs still to come."""
    from twinnet.config import make_config

    from twinnet.sweep import _complete

    saved = RunDir(path).read_json(CONFIG)
    jobs = make_config(ReproduceConfig, saved["config"], context=str(path / CONFIG)).jobs(bool(saved.get("quick")))
    # finished as the sweep counts it (a summary that is not a diverged run's), and its own report written: one
    # without it yet is still finishing in the process running it, which draws its figures
    done = {j.key: RunDir(path / j.key).read_json(SUMMARY) for _, j in jobs
            if _complete(path / j.key) and (path / j.key / REPORT).is_file()}
    return _summary(path, jobs, done)


def again(path: Path) -> str:
    """The command that continues the reproduce folder ``path``, from its saved configuration (its seed is kept:
    a continuation refuses --seed)."""
    saved = RunDir(path).read_json(CONFIG)
    cfg = saved.get("config", {})
    return " ".join(["twinnet reproduce", *(["--quick"] if saved.get("quick") else []),
                     *(["--full"] if cfg.get("level") == "full" else []),
                     *([f"--parts {cfg['parts']}"] if cfg.get("parts") and cfg["parts"] != ReproduceConfig.parts else []),
                     *(["--no-verify"] if cfg.get("verify") is False else []), f"--out {path}"])


SEED_FIGURES = ("test_acc", "training_s")  # shown over seeds, where a run's summary has them


def _over_seeds(jobs: list[Job], done: dict[str, dict]) -> list[dict]:
    """--full: each headline preset's runs (its first seed and the seeds added) as mean ± std; the ladder's
    rungs each on their own."""
    from twinnet.experiments.image import training_s
    from twinnet.seeds import over_seeds

    out = []
    for key, (_, offsets) in FULL_SEEDS.items():
        keys = {key, *(seed_key(key, s) for s in offsets)}
        members = [j for j in jobs if j.key in keys]
        if len(members) > 1:
            for rung, summaries in _compared([done[j.key] for j in members]):
                # training time without the evaluations, as each run's own report and the ladder's table give it
                timed = [{**s, "training_s": training_s(s)} if isinstance(s.get("train_time_s"), (int, float)) else s
                         for s in summaries]
                figures = over_seeds(timed)
                out.append({"job": key if rung is None else f"{key}: {rung}", "seeds": [j.seed for j in members],
                            "figures": {k: figures[k] for k in SEED_FIGURES if k in figures},
                            **({} if rung is None else {"rung": rung})})
    return out


def _compared(summaries: list[dict]) -> list[tuple[str | None, list[dict]]]:
    """(rung, one summary per seed) of what a run's seeds are compared on: the run itself (rung None), or, for a
    ladder (a summary listing its ``variants``), each rung that every seed ran."""
    if not all(isinstance(s.get("variants"), list) for s in summaries):
        return [(None, summaries)]
    out = []
    for rung in (r.get("variant") for r in summaries[0]["variants"]):
        rows = [next((r for r in s["variants"] if r.get("variant") == rung), None) for s in summaries]
        if all(rows):
            out.append((rung, rows))
    return out


def _headline(path: Path, summary: dict) -> str:
    from twinnet.runner import headline

    text = headline(path) or str(summary.get("outcome", ""))
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return "; ".join(lines[-2:])  # a headline that prints a table (mlp-compare) ends with its verdict


def report(path: Path) -> list:
    from twinnet.report.build import body_blocks

    finished = (path / SUMMARY).is_file()
    s = RunDir(path).read_json(SUMMARY) if finished else progress(path)
    runs, pending = s["runs"], s.get("pending", [])
    rows = {r["job"]: [r["part"], f"[{r['job']}]({r['job']}/report.md)", r["experiment"], str(r["seed"]),
                       r["headline"]] for r in runs}
    rows.update({r["job"]: [r["part"], r["job"], r["experiment"], str(r["seed"]), _unfinished(path / r["job"])]
                 for r in pending})
    overview = Table(["part", "run", "experiment", "seed", "result"], [rows[k] for k in s.get("order", rows)])
    state = [] if finished else [Text(
        f"**In progress: {len(runs)} of {len(runs) + len(pending)} runs finished** (this folder is still running, "
        f"or was stopped: `{again(path)}` continues it). The runs not finished yet are listed in the overview and "
        "left out below.")]
    sections = [Section("Overview", [
        *state,
        Text("Each run below is a complete run directory of its own (its report.md, report.html, configuration, "
             "environment and files are in its folder); this report shows what each found, part by part."),
        overview, *_seeds_table(s.get("over_seeds") or [])])]
    for part in dict.fromkeys(r["part"] for r in runs):
        title = PARTS[part][0]
        blocks = []
        for r in (r for r in runs if r["part"] == part):
            e = get_experiment(r["experiment"])
            run = path / r["job"]
            drawn = (run / REPORT).is_file()  # its own report drew its figures already
            heading = f"{r['job']}: {TITLES.get(r['job'], e.description)}"
            blocks.append(Section(heading, relocated(body_blocks(run, draw=not drawn), r["job"])))
        if blocks:
            sections.append(Section(title, blocks))
    return sections


def _unfinished(job: Path) -> str:
    """A run not finished yet, with how many of its own runs have (a sweep's, in its results.jsonl)."""
    from twinnet import TwinnetError
    from twinnet.runs import RESULTS, read_jsonl

    try:
        done = len(read_jsonl(job / RESULTS))
    except TwinnetError:  # a damaged record: the count is not worth failing the report for
        done = 0
    return f"not finished yet ({done} of its runs finished so far)" if done else "not finished yet"


def _seeds_table(groups: list[dict]) -> list:
    """The headline presets and the ladder's rungs over their seeds (--full), or nothing."""
    from twinnet.seeds import fmt

    rows = []
    for g in groups:
        # a folder summarised before session 38 kept the time with its evaluations (train_time_s)
        acc = g["figures"].get("test_acc")
        time = g["figures"].get("training_s", g["figures"].get("train_time_s"))
        rows.append([g["job"], ", ".join(map(str, g["seeds"])),
                     f"{fmt('test_acc', acc['mean'])} ± {fmt('test_acc', acc['std'])}" if acc else "",
                     f"{fmt('test_acc', acc['min'])} – {fmt('test_acc', acc['max'])}" if acc else "",
                     ", ".join(fmt("test_acc", v) for v in acc["values"]) if acc else "",
                     f"{time['mean']:,.0f} ± {time['std']:,.0f} s" if time else ""])
    if not rows:
        return []
    from twinnet.experiments.cifar import LADDER
    from twinnet.report import analysis

    rungs = {g["rung"]: g for g in groups if "rung" in g}
    steps = [{"variant": name, "mean": rungs[name]["figures"]["test_acc"]["mean"],
              "std": rungs[name]["figures"]["test_acc"]["std"]}
             for name in LADDER if name in rungs and "test_acc" in rungs[name]["figures"]]
    seeds = rungs[steps[0]["variant"]]["seeds"] if steps else []
    return [Text("The headline presets, and each rung of the improvement ladder, over their seeds: test accuracy "
                 "as mean ± standard deviation over the seeds (population std, ddof 0), its range and each seed's "
                 "value in the seeds' order; training time (evaluations left out) as mean ± std."),
            Table(["run", "seeds", "test accuracy", "min – max", "per seed", "training time"], rows, {2, 3, 4, 5}),
            *([Text(analysis.ladder_over_seeds(steps, seeds))] if len(steps) > 1 else [])]


def headline(s: dict) -> str:
    return f"{len(s['runs'])} runs: " + "; ".join(f"{r['job']} {r['headline']}" for r in s["runs"][:4]) + (
        " ..." if len(s["runs"]) > 4 else "")


register(Experiment(
    name="reproduce",
    description="the course's whole assignment: every experiment of the MLP, CNN and RNN parts and the engine "
    "checks, through the sweep runner, in one report (report.md and report.html)",
    config_cls=ReproduceConfig, run=run, report=report, headline=headline, progress=progress, again=again,
))
