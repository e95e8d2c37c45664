"""The ``twinnet`` command: list, run, reproduce, summary, report, check."""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import sys
import textwrap
import warnings
from pathlib import Path

from twinnet import TwinnetError, __version__
from twinnet.console import OutputError, StandardOutput, one_line, one_line_warnings

EPILOG = """examples:
  twinnet list
  twinnet run mlp-compare
  twinnet run mlp-compare --quick --out /tmp/smoke
  twinnet run mlp-compare --set datasets=moons --set hidden=32,32 --set lr=0.05 --seed 3
  twinnet run palindrome --set length=10 --seeds 0-4
  twinnet reproduce --quick --data-dir ../shared/data
  twinnet summary mlp --engine numpy
  twinnet report runs/mlp-compare/20261123-120000
"""


def _path(text: str) -> Path:
    """A path option's value: an empty one (an unset shell variable, say) is refused, not read as the current
    folder."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path; give a file or folder name")
    return Path(text)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="twinnet",
        description="Classic deep-learning experiments, each network built twice (NumPy and PyTorch).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"twinnet {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    sub.add_parser("list", help="list the experiments with a one-line description")

    r = sub.add_parser(
        "run",
        help="run an experiment and write its run directory",
        description="Run EXPERIMENT, writing to a run directory, whose path is the last line printed, the files "
        "that apply to it: config.json, env.json, summary.json, report.md and report.html always; the figures; "
        "metrics.jsonl, structure.json, trace.json and a TensorBoard event log for a training run; checkpoint.pt "
        "for a resumable one; results.jsonl and a sub-folder per job for a sweep. The README's table says which.",
    )
    r.add_argument("experiment", metavar="EXPERIMENT", help="name from `twinnet list`")
    r.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a configuration field (repeatable); lists as a,b,c; "
                   "`twinnet run EXPERIMENT --show-config` lists the fields")
    r.add_argument("--quick", action="store_true", help="shrink the experiment to a smoke-test size")
    r.add_argument("--seed", type=int, default=None, help="seed for data, initial weights and batch order")
    r.add_argument("--seeds", default=None, metavar="0,1,2",
                   help="run once per seed (a list, or a range like 0-4) into one group directory, one complete run "
                   "per seed in seed-<k>/, and report every number as mean ± std (over seeds) with the per-seed values")
    r.add_argument("--out", type=_path, default=None, help="run directory (must not exist or be empty)")
    r.add_argument("--runs-dir", type=_path, default=None,
                   help="root of default run directories: RUNS_DIR/EXPERIMENT/TIMESTAMP (default: runs)")
    r.add_argument("--data-dir", type=_path, default=None,
                   help="where real datasets live (else $TWINNET_DATA_DIR, else, for --resume, the run's own); "
                   "e.g. DIR/mnist/*-ubyte.gz")
    r.add_argument("--threads", type=int, default=None,
                   help="threads for torch, NumPy's BLAS and the NumPy engine alike (default: $TWINNET_THREADS, else "
                   "the cores other processes leave idle when the run starts; a resumed run keeps its count unless "
                   "this is given). "
                   "Results agree across thread counts to float round-off, not bit for bit")
    r.add_argument("--show-config", action="store_true", help="print the resolved configuration and exit")
    r.add_argument("--resume", type=_path, default=None, metavar="RUN_DIR",
                   help="continue an interrupted run in RUN_DIR from its last checkpoint (image runs: the last "
                   "finished epoch, or checkpoint_every steps where a preset sets it; palindrome: about the last "
                   "minute), with its saved configuration; a sweep (palindrome-sweep, cnn-ablation, --seeds) keeps "
                   "its finished runs and continues the others from their checkpoints. --set still applies on top, "
                   "for the settings that move the work, not its result (not for a --seeds group, which continues "
                   "with its saved settings)")

    rp = sub.add_parser(
        "reproduce",
        help="run the course's whole assignment (every experiment of it) and write one report",
        description="Run every experiment the course's assignment asks for (part 1 the MLP, part 2 the CNN, part 3 "
        "the RNN, and the engine checks) through the sweep runner, each a complete run directory under OUT, and "
        "write OUT/report.md and a self-contained OUT/report.html with them all. Run it again with the same OUT "
        "to continue after an interruption: finished runs are kept, stopped ones continue from their checkpoints.",
    )
    rp.add_argument("--quick", action="store_true", help="every run at its smoke-test size (minutes; figures not "
                    "meaningful)")
    rp.add_argument("--full", action="store_true", help="also the headline presets with seeds 1 and 2 (mean ± std "
                    "over 3) and the improvement ladder with seed 1 (each rung over 2); days on a CPU, minutes with "
                    "--quick")
    rp.add_argument("--parts", default=None, metavar="mlp,cnn,rnn,engine",
                    help="the parts to run (default: all four; a resume may add parts)")
    rp.add_argument("--out", type=_path, default=None,
                    help="its directory (default: runs/reproduce, or runs/reproduce-quick with --quick)")
    rp.add_argument("--data-dir", type=_path, default=None,
                    help="where MNIST and CIFAR-10 live (else $TWINNET_DATA_DIR, else, continuing, the run's "
                    "own); parts 1 and 2 need them")
    rp.add_argument("--threads", type=int, default=None, help="threads for each run (default: as `twinnet run`)")
    rp.add_argument("--seed", type=int, default=None, help="seed of the first run of each experiment (default 0)")
    rp.add_argument("--no-verify", action="store_true",
                    help="use MNIST and CIFAR-10 files that differ from the official ones (checksums not checked)")

    s = sub.add_parser("summary", help="print a model's structure table (layers, shapes, parameters)",
                       description="Print MODEL's structure, layer by layer: kind, kernel/stride/padding, input and "
                       "output shape with the batch dimension, weight and bias shapes, parameters, buffers, "
                       "multiply-adds and activation memory, as each engine builds it.")
    s.add_argument("model", metavar="MODEL", help="model name (an unknown name lists the known ones)")
    s.add_argument("--engine", choices=("numpy", "torch", "both"), default="both",
                   help="the engine whose twin is described (default: both, one table each)")
    s.add_argument("--batch", type=int, default=1, metavar="N",
                   help="shapes, mult-adds and activation memory for a batch of N (1 to 4096, default 1; counted "
                        "from batches of 2 and 3 run through the model, so a large N costs no memory)")

    rep = sub.add_parser("report", help="redraw the figures, report.md, report.html and the TensorBoard event log "
                                        "of a finished run (a reproduce folder: of its runs finished so far)",
                         description="Redraw the figures, report.md, report.html and the TensorBoard event log of a "
                         "finished run from its files (a run, a sweep, a --seeds group or a reproduce folder), and "
                         "print the path of report.md; a reproduce folder still running, or stopped, reports the "
                         "runs it has finished so far. Nothing is trained; if drawing fails, the earlier figures "
                         "are restored.")
    rep.add_argument("run_dir", type=_path, metavar="RUN_DIR", help="the run directory (the last line `twinnet run` "
                     "printed)")

    c = sub.add_parser(
        "check",
        help="grade a student's own NumPy layers against twinnet's references",
        description=textwrap.fill("Load STUDENT.py (and any more files, later ones replacing earlier definitions, "
        "each replacement named) in isolation and check every layer the convention names (an optional one only "
        "where the files define it) on "
        "seeded random float64 configurations (strides, paddings including 0, "
        "batch 1, overlapping pools, square weights, huge logits, ...): forward, input gradient and every "
        "parameter gradient against PyTorch autograd, plus optimiser steps and a whole-model check where the "
        "convention has them. Prints one row per layer; exits 0 if every check passed, 1 if any failed, 2 if the "
        "submission cannot be loaded or an option is wrong. Needs --convention or --spec.", 79),
        epilog="examples:\n  twinnet check layers.py rnn_layers.py optim.py --convention cs231n\n"
        "  twinnet check modules.py mlp_numpy.py --convention uva --json grade.json\n"
        "  TWINNET_CHECK_SEED=8125 twinnet check layers.py --convention cs231n --only conv,maxpool\n"
        "  twinnet check layers.py optim.py --each submissions/ --convention cs231n --csv grades.csv",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    c.add_argument("files", nargs="+", type=_path, metavar="STUDENT.py",
                   help="the student's files, one or more: .py files, or Jupyter notebooks (.ipynb), of which the "
                   "imports, functions, classes and constants are loaded and nothing else is run")
    c.add_argument("--convention", default=None, metavar="NAME",
                   help="how the course names, calls and lays out its layers: cs231n (functional "
                   "forward/backward with caches, W (in, out); FullyConnectedNet's loss(X, y)), uva (modules with "
                   "params/grads dicts, W (out, in), probabilities into the loss), uva-elu (uva from 2022: ELU for ReLU), uva-leaky (uva in 2019: leaky ReLU, "
                   "its slope an argument of the layer and the MLP), cs324 (modules, W (in, out), softmax fused into the loss, one-hot "
                   "targets), torch (twinnet.numpy_nn's own protocol), eecs498 (cs231n's layers as static methods of "
                   "classes, on torch tensors; pass the course's a3_helper.py too), dlfs (the book Deep Learning "
                   "from Scratch's common/layers.py: Affine(W, b), Convolution, Pooling, BatchNormalization, Dropout, "
                   "SoftmaxWithLoss; pass its common/functions.py and util.py too) or dlfs2 (its second volume's "
                   "common/layers.py and time_layers.py: params and grads lists, Affine, Sigmoid, Dropout, "
                   "SoftmaxWithLoss, RNN, LSTM; pass its common/functions.py, np.py and config.py too)")
    c.add_argument("--spec", type=_path, default=None, metavar="SPEC.toml",
                   help="a convention of your own, in the built-in ones' schema, or one of them with a few "
                   "changes (base = \"cs231n\" and only the tables that differ; see the README)")
    c.add_argument("--only", default=None, metavar="LAYERS",
                   help="check only these layer kinds, comma-separated (of: linear, relu, elu, leaky_relu, sigmoid, "
                   "tanh, dropout, conv, maxpool, batchnorm, batchnorm_alt, spatial_batchnorm, layernorm, "
                   "spatial_groupnorm, softmax_loss, svm_loss, softmax_cross_entropy, mse_loss, l1_loss, bce_loss, "
                   "rnn_step, rnn, lstm_step, gru_step, lstm, word_embedding, sgd_momentum, rmsprop, adam, mlp, "
                   "convnet; each convention has some; a layer named here is required even where the convention makes "
                   "it optional)")
    c.add_argument("--seed", type=int, default=None,
                   help="seed of the configurations (default: $TWINNET_CHECK_SEED, a teacher's secret, else 0)")
    c.add_argument("--configs", type=int, default=6, metavar="K",
                   help="random configurations per layer, beside the fixed edge cases (default 6, at most 1000)")
    c.add_argument("--json", type=_path, default=None, metavar="OUT", help="also write the grades as JSON")
    c.add_argument("--each", type=_path, default=None, metavar="DIR",
                   help="grade a whole class: DIR holds one folder per student, and the STUDENT.py arguments are "
                   "the names of the files to find in each (at any depth, e.g. layers.py or cs231n/layers.py); "
                   "each student is graded on their own, on the files found (the layers a missing file would hold "
                   "count as not found); a broken file, or none found, gives 0 points and the reason")
    c.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="with --each: grade N students at once, each in a process of their own (default 1; about "
                   "one per core)")
    c.add_argument("--csv", type=_path, default=None, metavar="OUT",
                   help="with --each: write the class's grades as CSV (one row per student, a column per layer), "
                   "updated after each student")
    return p


def _cmd_list() -> None:
    from twinnet.registry import all_experiments

    experiments = all_experiments()
    width = max(len(e.name) for e in experiments)
    for e in experiments:
        print(f"{e.name.ljust(width)}  {e.description}")


def _cmd_run(args, command: str) -> None:
    from twinnet.config import to_dict
    from twinnet.runner import announce, resolve_config, resolve_data_dir, run_experiment

    from twinnet import distributed, seeds

    if args.threads is not None and args.threads < 1:
        raise TwinnetError(f"--threads must be >= 1, got {args.threads}")
    if args.resume is not None and args.runs_dir is not None:
        raise TwinnetError("--resume continues the run where it is: drop --runs-dir (it places new runs)")
    if args.out is not None and args.runs_dir is not None:
        raise TwinnetError("--out names the run's own folder, so --runs-dir would place nothing: drop one of them")
    runs_root = args.runs_dir if args.runs_dir is not None else Path("runs")
    if distributed.launched():
        if args.seeds is not None or (args.resume is not None and seeds.is_group(args.resume)):
            raise distributed.refusal("--seeds runs a group of runs, one after another, not under torchrun: launch "
                                      "each seed's run under torchrun with --seed, or the group without torchrun")
        if not args.show_config:
            import torch

            distributed.init_from_env(cuda=torch.cuda.is_available() and not _cpu_asked(args.overrides))
    # checked before anything is written (under torchrun, by rank 0 for every rank)
    data = args.data_dir if distributed.launched() else resolve_data_dir(args.data_dir)
    if args.seed is not None and not 0 <= args.seed < 2**32:
        raise TwinnetError(f"--seed must be in [0, 2**32), got {args.seed}")
    if args.resume is not None and (args.out is not None or args.quick or args.seed is not None):
        raise TwinnetError("--resume continues RUN_DIR with its saved configuration: drop --out, --quick and --seed")
    if args.seed is not None and any(o.partition("=")[0].strip() == "seed" for o in args.overrides):
        raise TwinnetError("--seed and --set seed=... both set the seed: give one of them")
    if args.seeds is not None or (args.resume is not None and seeds.is_group(args.resume)):
        if args.seeds is not None and args.seed is not None:
            raise TwinnetError("--seeds runs every seed it lists: drop --seed")
        if args.seeds is not None and args.resume is not None:
            raise TwinnetError("--resume continues a group with the seeds it started with: drop --seeds"
                               if seeds.is_group(args.resume) else
                               f"--resume continues the run {args.resume} at its own seed: drop --seeds (for more "
                               "seeds, start a group in a new folder: --seeds ... --out NEW)")
        if any(o.partition("=")[0].strip() == "seed" for o in args.overrides):
            raise TwinnetError("--seeds sets each run's seed itself, so --set seed=... would change nothing: drop it")
        if args.show_config and args.resume is not None:  # what the group's runs continue with
            _print_config(args.experiment, to_dict(seeds.group_config(Path(args.resume), args.experiment)))
            return
        if args.show_config:
            args.seed = seeds.parse_seeds(args.seeds)[0]
        else:
            path = seeds.run_group(args.experiment, args.overrides,
                                   seeds.parse_seeds(args.seeds) if args.seeds is not None else [],
                                   quick=args.quick, out=args.out, runs_root=runs_root, threads=args.threads,
                                   resume=args.resume, command=command, data=data)
            announce(path)
            return
    if args.show_config:
        if args.resume is not None:  # the configuration the resumed run would continue with
            from twinnet.runner import reopen

            cfg = to_dict(reopen(args.experiment, Path(args.resume), args.overrides, quiet=True)[2])
        else:
            cfg = to_dict(resolve_config(args.experiment, args.overrides, args.quick, args.seed))
        _print_config(args.experiment, cfg)
        return
    path = run_experiment(
        args.experiment, args.overrides, quick=args.quick, seed=args.seed, out=args.out,
        runs_root=runs_root, threads=args.threads, resume=args.resume, command=command, data=data,
    )
    if distributed.world().rank == 0:  # the others trained in scratch directories of their own
        announce(path)
    _diverged(path)


def _print_config(name: str, cfg: dict) -> None:
    """``--show-config``: every setting, its value and its type."""
    from twinnet.config import describe_fields
    from twinnet.registry import get_experiment

    types = {field: tp for field, tp, _ in describe_fields(get_experiment(name).config_cls)}
    for k, v in cfg.items():
        print(f"{k} = {v!r}    ({types[k]})")


def _diverged(path: Path) -> None:
    """A run whose experiment keeps a diverged run as a result (a palindrome length, counted as one by a
    sweep) still ends, run alone, as every diverged run does: one line and exit status 1."""
    from twinnet.runs import SUMMARY, read_json
    from twinnet.train import Diverged

    summary = read_json(Path(path) / SUMMARY) if (Path(path) / SUMMARY).is_file() else {}
    if isinstance(summary, dict) and summary.get("outcome") == "diverged":
        step = summary.get("diverged_at_step")
        at = f" at step {step:,}" if isinstance(step, int) else ""
        raise Diverged(f"the training loss became non-finite{at}; lower the learning rate: the run stopped, and "
                       f"{Path(path) / SUMMARY} says diverged", step if isinstance(step, int) else 0)


def _cmd_reproduce(args, command: str) -> None:
    from twinnet.runner import announce, resolve_data_dir, run_experiment
    from twinnet.runs import CONFIG

    from twinnet import distributed

    if distributed.launched():
        raise distributed.refusal("reproduce runs its experiments itself, one after another, not under torchrun; "
                                  "launch it without torchrun")
    if args.threads is not None and args.threads < 1:
        raise TwinnetError(f"--threads must be >= 1, got {args.threads}")
    out = args.out or Path("runs") / ("reproduce-quick" if args.quick else "reproduce")
    overrides = ([f"parts={args.parts}"] if args.parts is not None else []) + (["level=full"] if args.full else []) \
        + (["verify=false"] if args.no_verify else [])
    again = (out / CONFIG).is_file()
    if again:
        import json

        try:
            saved = json.loads((out / CONFIG).read_text())
        except (OSError, ValueError):
            saved = None
        if not isinstance(saved, dict) or not isinstance(saved.get("experiment"), str):
            raise TwinnetError(f"{out}: its {CONFIG} is damaged (unreadable, or it names no experiment); set it back "
                               "as it was to continue that run, or choose another --out")
        if saved.get("experiment") != "reproduce":
            raise TwinnetError(f"{out} holds another run ({saved['experiment']}), not a reproduce run; choose another "
                               "--out")
        if bool(saved.get("quick")) != args.quick:
            raise TwinnetError(f"{out} holds a {'quick' if saved.get('quick') else 'full-size'} reproduce run; "
                               f"{'add' if saved.get('quick') else 'drop'} --quick to continue it, or "
                               "choose another --out")
        if args.seed is not None:
            raise TwinnetError(f"{out} is continued with its own seed; drop --seed (or choose another --out)")
        from twinnet.config import comma_items

        config = saved.get("config") if isinstance(saved.get("config"), dict) else {}
        held, named = comma_items(config.get("parts", "")), comma_items(args.parts or "")
        if args.full and config.get("level") != "full" and args.parts is not None and not set(held) <= set(named):
            # a resume's parts join the folder's, and --full is the whole folder's: it would reach parts not named
            raise TwinnetError(f"{out} holds the parts {','.join(held)}, and --full makes every part of a folder full "
                               f"(a resume adds parts, never drops them): name them all (--parts "
                               f"{','.join(dict.fromkeys([*held, *named]))}) to run them all at full size, or give "
                               f"--full --parts {','.join(named)} another --out")
    path = run_experiment("reproduce", overrides, quick=args.quick and not again, seed=args.seed,
                          out=None if again else out,
                          threads=args.threads, resume=out if again else None, command=command,
                          data=resolve_data_dir(args.data_dir))
    announce(path)


def _cmd_summary(args) -> None:
    from twinnet.architectures import MODELS, build_model
    from twinnet.structure import format_text, rows_as_dicts, structure

    if not 1 <= args.batch <= 4096:
        raise TwinnetError(f"--batch must be in 1..4096, got {args.batch}")
    engines = ("numpy", "torch") if args.engine == "both" else (args.engine,)
    for engine in engines:
        model = build_model(args.model, engine)
        rows, total = structure(model, MODELS[args.model].input_shape, args.batch)
        print(f"{args.model} ({engine} engine): {MODELS[args.model].description}")
        print(format_text(rows_as_dicts(rows), total))
        print()


def _cmd_check(args) -> int:
    from twinnet import grader
    from twinnet.grader.child import grade_isolated
    from twinnet.grader.conventions import BUILT_IN
    from twinnet.grader.loader import named_once
    from twinnet.runs import atomic_write_json

    if (args.convention is None) == (args.spec is None):
        raise TwinnetError(f"give one of --convention ({', '.join(BUILT_IN)}) or --spec SPEC.toml"
                           + (", not both" if args.spec is not None else ""))
    if args.seed is not None and args.seed < 0:
        raise TwinnetError(f"--seed must be >= 0, got {args.seed}")
    convention = grader.resolve_convention(args.convention, args.spec)
    only = [k.strip() for k in args.only.split(",") if k.strip()] if args.only is not None else None
    if only is not None and not only:
        raise TwinnetError(f"--only {args.only!r} names no layer; give layer kinds such as --only conv,maxpool, or "
                           "leave --only out to check every layer")
    if args.each is None and args.csv is not None:
        raise TwinnetError("--csv writes a class's grades: it goes with --each DIR (one student's grade: --json)")
    if args.each is None and args.jobs != 1:
        raise TwinnetError("--jobs grades several students at once: it goes with --each DIR")
    if args.jobs < 1:
        raise TwinnetError(f"--jobs must be >= 1 (students graded at once), got {args.jobs}")
    from twinnet import hardware

    hardware.check_thread_count(args.jobs, f"--jobs {args.jobs}")  # each a process of its own, with torch loaded
    if args.each is not None and args.json is not None:
        raise TwinnetError("with --each the grades go to --csv OUT (one row per student), not --json")
    if args.json is not None:  # before grading: a report that cannot be saved is found out first
        _writable_output(args.json, "--json", "grade.json", _is_grade_file)
    if args.csv is not None:
        from twinnet.grader.each import is_grades_csv

        _writable_output(args.csv, "--csv", "grades.csv", is_grades_csv)
    unknown = [k for k in only or () if k not in convention["layers"]]
    if unknown:
        raise TwinnetError(f"--only {','.join(unknown)}: not a layer of the {convention['name']} convention; its "
                           f"layers: {', '.join(convention['layers'])}")
    seed = grader.resolve_seed(args.seed)
    if args.each is not None:
        from twinnet.grader.each import format_class, grade_each

        results = grade_each(args.each, args.files, convention, only=only, seed=seed, configs=args.configs,
                             csv_path=args.csv, jobs=args.jobs)
        print(format_class(results, convention["name"]))
        return 0 if all(r["all_passed"] for r in results) else 1
    try:
        report = grade_isolated(args.files, convention, only=only, seed=seed, configs=args.configs)
    except TwinnetError as e:  # the submission could not be graded (it does not load...): a gradebook still gets 0
        if args.json is not None:  # each layer the files had to define is lost, not an optional one
            required = [k for k, entry in convention["layers"].items()
                        if not entry.get("optional", False) and entry.get("graded", True)]
            atomic_write_json(args.json, {"convention": convention["name"], "seed": seed,
                                          "files": named_once(args.files), "ok": False, "points": 0,
                                          "max_points": len(only or required), "error": str(e), "layers": []})
        raise
    if args.json is not None:  # before the table: a reader of stdout that goes away early costs no grade
        atomic_write_json(args.json, report.as_dict())
    print(grader.format_table(report))
    return 0 if report.ok else 1


def _writable_output(path: Path, flag: str, example: str, ours) -> None:
    """A file the grades will be written to, checked before grading: its folder exists and is writable, and
    it is new or holds grades already (``ours``), never a submission or a spec taken for it."""
    if not path.parent.is_dir():
        what = "is a file, not a folder" if path.parent.exists() else "does not exist"
        raise TwinnetError(f"{flag} {path}: {path.parent} {what}; name a file in an existing folder")
    if path.is_dir():
        raise TwinnetError(f"{flag} {path} is a folder; name a file in it (e.g. {path / example})")
    if path.exists() and not path.is_file():  # a device or a pipe would be read without end, then not replaced
        raise TwinnetError(f"{flag} {path} is not a regular file (a device or a pipe); name a file (e.g. {example}): "
                           "the grades' table goes to stdout already")
    if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise TwinnetError(f"{flag} {path}: not writable here; name a file in a folder you can write")
    if path.exists() and not ours(path):  # `--json a.py b.py`: a submission taken for it
        raise TwinnetError(f"{flag} {path} exists and is not a grade file of twinnet check (a submission, the "
                           f"spec?), which the grades would replace; name a new file (e.g. {example})")


def _is_grade_file(path: Path) -> bool:
    """Whether ``path`` holds what ``twinnet check --json`` writes (so that writing it again loses nothing)."""
    import json

    try:
        if path.stat().st_size > 64 * 2**20:  # far beyond any grade file: not read in whole
            return False
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and {"convention", "seed", "files", "ok", "points", "layers"} <= data.keys()


def main(argv: list[str] | None = None) -> int:
    """The command line; returns the exit status: 0 done, 1 the run diverged (or failed unexpectedly),
    2 a problem to fix (one line on stderr), 130 interrupted (Ctrl-C), 143 terminated (SIGTERM)."""
    try:
        return _main(argv)
    except KeyboardInterrupt:  # Ctrl-C while the modules load, before anything is written
        print("twinnet: interrupted; files already written are complete", file=sys.stderr)
        return 130


def _main(argv: list[str] | None) -> int:
    from twinnet.runner import Terminated, sigterm_interrupts

    from twinnet import distributed

    argv = sys.argv[1:] if argv is None else list(argv)
    # started with stdout or stderr closed (`>&-`): what would go there goes nowhere, and the run goes on
    if sys.stdout is None:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the life of the process
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115
    for stream in (sys.stdout, sys.stderr):  # a file name that is not UTF-8 is printed escaped, not a crash
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    rank = distributed.launch_rank()  # under torchrun, rank 0 alone prints
    if rank > 0:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the life of the process
        warnings.simplefilter("ignore")
    args = _parser().parse_args(argv)
    one_line_warnings()
    stdout = sys.stdout
    sys.stdout = StandardOutput(stdout)
    try:
        with sigterm_interrupts():
            return _dispatch(args, "twinnet " + shlex.join(argv))
    except TwinnetError as exc:
        from twinnet.train import Diverged

        if rank == 0 or not getattr(exc, "every_rank", False):  # the others' own problems, with their rank
            where = f"rank {rank}: " if rank else ""
            print(f"twinnet: {where}error: {one_line(str(exc))}", file=sys.stderr)
        return 1 if isinstance(exc, Diverged) else 2
    except MemoryError:
        print("twinnet: error: out of memory: a setting asks for more than this machine has (a model, grid or "
              "batch too large?); lower it", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `twinnet ... | head`: the reader has gone; no more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OutputError as exc:  # nothing of twinnet's is half-written: only what it printed was lost
        with contextlib.suppress(OSError, ValueError):  # what waits in the buffer would fail again at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), stdout.fileno())
        print(f"twinnet: error: {exc.strerror or exc}, writing standard output; check where it goes (a full disk "
              "or device?)", file=sys.stderr)
        return 2
    except OSError as exc:  # a full disk, a read-only folder, ...: what failed, in one line
        where = f" ({exc.filename})" if exc.filename else ""
        print(one_line(f"twinnet: error: {exc.strerror or exc}{where}; files written before are complete, "
                        "a file being replaced was left as it was" + _report_hint(exc.filename)), file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        if rank == 0:
            print("twinnet: interrupted; files already written are complete", file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130
    except Exception as exc:  # noqa: BLE001 - a problem twinnet did not foresee: still one line, unless asked
        if os.environ.get("TWINNET_DEBUG") == "1":
            raise
        if _out_of_memory(exc):  # torch's allocators say it as a RuntimeError
            print("twinnet: error: out of memory: a setting asks for more than this machine (or GPU) has (a model, "
                  "grid or batch too large?); lower it", file=sys.stderr)
            return 2
        where = f"rank {rank}: " if rank else ""
        print(one_line(f"twinnet: {where}error: unexpected {type(exc).__name__}: {str(exc)[:300]} (set "
                        "TWINNET_DEBUG=1 for the traceback, and please report it)"), file=sys.stderr)
        return 1
    finally:
        if isinstance(sys.stdout, StandardOutput):  # as it was (tests call main again and again)
            sys.stdout = stdout
        distributed.close()


def _cpu_asked(overrides: list[str]) -> bool:
    """Whether the command line keeps a run off the GPU (``--set device=cpu``, or the NumPy engine): its ranks then
    join over gloo alone, however many GPUs the node has."""
    pairs = {key.strip(): value.strip() for key, _, value in (o.partition("=") for o in overrides)}
    return pairs.get("device") == "cpu" or pairs.get("engine") == "numpy"


def _report_hint(filename) -> str:
    """Where a finished run's report (or a figure of it) could not be written: how to write it again."""
    from twinnet.runs import SUMMARY

    try:
        folder = Path(os.fsdecode(filename)).parent if filename else None
        finished = folder is not None and (folder / SUMMARY).is_file()
    except (OSError, TypeError, ValueError):
        return ""
    return f"; once it can be written, `twinnet report {folder}` draws the run's report again" if finished else ""


def _out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is an allocator's out-of-memory error (torch's CPU or CUDA allocator, OpenBLAS)."""
    text = str(exc).lower()
    if isinstance(exc, ValueError):  # NumPy asked for an array larger than any address space
        return "maximum allowed size exceeded" in text or "array is too big" in text
    return isinstance(exc, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text
                                              or "failed to allocate" in text)


def _dispatch(args, command: str) -> int:
    if args.command == "list":
        _cmd_list()
    elif args.command == "run":
        _cmd_run(args, command)
    elif args.command == "reproduce":
        _cmd_reproduce(args, command)
    elif args.command == "summary":
        _cmd_summary(args)
    elif args.command == "check":
        return _cmd_check(args)
    elif args.command == "report":
        from twinnet.report.build import write_report
        from twinnet.seeds import is_group, write_group_report

        print(write_group_report(args.run_dir) if is_group(args.run_dir) else write_report(args.run_dir))
    else:
        _parser().print_help()
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
