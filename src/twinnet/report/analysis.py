"""Sentences of a report's analysis, each derived from a run's measured numbers and carrying them.

Nothing here is written in advance: every function reads records or counts and says what they show,
with the figures that show it, so the same code gives a true sentence for any run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


NOISE = 0.01  # a rise of the test loss smaller than this fraction of its lowest value says nothing


def overfitting(records: Sequence[dict], unit: str = "epoch") -> str:
    """Where the test loss turned up while the training loss kept falling, or that it did not."""
    turn = _turn(records)
    if turn is None:
        return "There are too few evaluations to say whether the network began to overfit."
    at, last, rise, train_fell = turn
    where = lambda r: _where(r, unit)  # noqa: E731
    if at is last:
        first = _evals(records)[0]
        return (f"The test loss was still falling at the last evaluation ({where(last)}: {last['test_loss']:.4f}, "
                f"from {first['test_loss']:.4f} at {where(first)}): no sign of overfitting within this budget.")
    if rise < NOISE * at["test_loss"]:
        return (f"The test loss was lowest at {where(at)} ({at['test_loss']:.4f}) and ended within "
                f"{100 * NOISE:g}% of it ({last['test_loss']:.4f} at {where(last)}): no clear sign of overfitting "
                "within this budget.")
    if not _sustained(records, at):
        return (f"The test loss was lowest at {where(at)} ({at['test_loss']:.4f}) and {last['test_loss']:.4f} at "
                f"{where(last)}, but it was not above its lowest by more than {100 * NOISE:g}% at the last two "
                "evaluations: too little to tell overfitting from noise.")
    return (f"The test loss was lowest at {where(at)} ({at['test_loss']:.4f}) and rose by {rise:.4f} to "
            f"{last['test_loss']:.4f} by {where(last)}, while the training loss "
            + (f"kept falling ({at['train_loss']:.4f} to {last['train_loss']:.4f}): the network overfits after "
               f"{where(at)}" if train_fell else
               f"did not fall further ({at['train_loss']:.4f} to {last['train_loss']:.4f}): not the pattern of "
               "overfitting, in which the training loss keeps falling") + ".")


def ladder(rungs: Sequence[dict], base: str | None = None) -> str:
    """What each rung of an ablation ladder bought: ``rungs`` each ``{"variant", "test_acc", "ladder"}``, the
    ladder's rungs in the ladder's order (``"step"``, where given, names the changes a step adds: more than its
    rung's own where rungs between were not run); ``ladder`` false: a one-change variant of the rung ``base``."""
    steps = [r for r in rungs if r.get("ladder", True)]
    points = lambda a, b: 100 * (b["test_acc"] - a["test_acc"])  # noqa: E731
    texts = []
    if len(steps) > 1:
        gains = [(points(a, b), b.get("step", b["variant"])) for a, b in zip(steps, steps[1:])]
        parts = [f"{name} {gain:+.2f} ({_pct(a['test_acc'])} to {_pct(b['test_acc'])})"
                 for (gain, name), a, b in zip(gains, steps, steps[1:])]
        top = max(g for g, _ in gains)
        tops = [name for g, name in gains if top - g < 0.005]  # equal to the hundredth shown: tied
        texts.append(f"Each rung against the one above it, in points of test accuracy: {', '.join(parts)}.")
        texts.append((f"The largest step is {' and '.join(tops)}'s ({top:+.2f} points); " if top >= 0.005 else
                      "No rung improved on the one above it; ")
                     + f"from {steps[0]['variant']} ({_pct(steps[0]['test_acc'])}) to {steps[-1]['variant']} "
                     f"({_pct(steps[-1]['test_acc'])}) the ladder moves {points(steps[0], steps[-1]):+.2f} points in all.")
    others = [r for r in rungs if not r.get("ladder", True)]
    if others:
        ref = next((r for r in steps if r["variant"] == base), None)
        if ref is not None:
            texts.append(f"One change each on {ref['variant']} ({_pct(ref['test_acc'])}): "
                         + ", ".join(f"{r['variant']} {points(ref, r):+.2f}" for r in others) + " points.")
        else:
            texts.append(f"One change each on {base or 'the last rung'}, which this ablation did not run, so there "
                         "is nothing to measure them against: "
                         + ", ".join(f"{r['variant']} {_pct(r['test_acc'])}" for r in others) + ".")
    if len(rungs) > 1:
        top = max(r["test_acc"] for r in rungs)
        best = [r["variant"] for r in rungs if _pct(r["test_acc"]) == _pct(top)]
        texts.append(f"The most accurate {'is' if len(best) == 1 else 'are, level,'} {' and '.join(best)} "
                     f"({_pct(top)}). Each rung is one run at one seed: a difference of a few tenths of a point can "
                     "come from the seed alone.")
    return " ".join(texts)


def ladder_over_seeds(rungs: Sequence[dict], seeds: Sequence[int]) -> str:
    """What each rung bought over several seeds: ``rungs`` each ``{"variant", "mean", "std"}`` of its test accuracy,
    in the ladder's order. A step no larger than the two rungs' standard deviations added is not told apart from
    the seed."""
    if len(rungs) < 2:
        return ""
    parts, unclear = [], []
    for a, b in zip(rungs, rungs[1:]):
        gain = 100 * (b["mean"] - a["mean"])
        parts.append(f"{b['variant']} {gain:+.2f} ({_pct(a['mean'])} to {_pct(b['mean'])})")
        if abs(gain) <= 100 * (a["std"] + b["std"]):
            unclear.append(b["variant"])
    text = (f"Over seeds {', '.join(map(str, seeds))}, each rung's mean test accuracy against the one above it, in "
            f"points: {', '.join(parts)}.")
    if unclear:
        return text + (f" {' and '.join(unclear)}'s step{'s are' if len(unclear) > 1 else ' is'} no larger than the "
                       "two rungs' seed spreads (their standard deviations added): not told apart from the seed.")
    return text + " Every step is larger than the two rungs' seed spreads (their standard deviations added)."


def overfitting_across(named: Sequence[tuple[str, Sequence[dict]]], unit: str = "epoch") -> str:
    """Which of several runs (name, records) overfit, with where their test loss turned up, and which did not."""
    turned, not_turned = [], []
    for name, records in named:
        turn = _turn(records)
        if turn is None:
            continue
        at, last, rise, train_fell = turn
        if rise >= NOISE * at["test_loss"] and train_fell and _sustained(records, at):
            turned.append(f"{name} (lowest {at['test_loss']:.4f} at {_where(at, unit)}, {last['test_loss']:.4f} at "
                          f"{_where(last, unit)})")
        else:
            not_turned.append(name)
    if not turned and not not_turned:
        return ""
    if not turned:
        return "In none of them did the test loss turn up while the training loss fell: no rung overfits within this budget."
    return (f"The test loss turned up while the training loss kept falling, the sign of overfitting, in "
            f"{', '.join(turned)}" + (f"; not in {', '.join(not_turned)}" if not_turned else "") + ".")


def _turn(records: Sequence[dict]) -> tuple[dict, dict, float, bool] | None:
    """(the evaluation of lowest test loss, the last, the test loss's rise between them, whether the training
    loss fell between them), or None with fewer than two evaluations."""
    evals = _evals(records)
    if len(evals) < 2:
        return None
    at = min(evals, key=lambda r: r["test_loss"])
    last = evals[-1]
    return at, last, last["test_loss"] - at["test_loss"], last["train_loss"] < at["train_loss"]


def _sustained(records: Sequence[dict], at: dict) -> bool:
    """Whether the test loss stayed above its lowest (at ``at``) by more than the noise at each of the last two
    evaluations: one evaluation above it may be noise."""
    evals = _evals(records)
    tail = evals[-2:]
    return len(evals) >= 3 and all(r is not at and r["test_loss"] - at["test_loss"] >= NOISE * at["test_loss"]
                                   for r in tail)


def _evals(records: Sequence[dict]) -> list[dict]:
    """The evaluations after training began that have both a test and a training loss."""
    return [r for r in records if "test_loss" in r and "train_loss" in r and r.get("step", 1) > 0]


def learning_rate(records: Sequence[dict]) -> str:
    """The learning rate the evaluations recorded: constant (no schedule to draw), or its range."""
    rates = [float(r["lr"]) for r in records if isinstance(r.get("lr"), (int, float))]
    if not rates:
        return ""
    if max(rates) == min(rates):
        return (f"The learning rate was {rates[0]:g} at every evaluation recorded." if len(rates) > 1 else
                f"The learning rate was {rates[0]:g} at the one evaluation recorded.")
    digits = next(d for d in range(3, 18) if f"{min(rates):.{d}g}" != f"{max(rates):.{d}g}")  # two rates print apart
    g = lambda x: f"{x:.{digits}g}"  # noqa: E731
    return (f"The learning rate moved between {g(min(rates))} and {g(max(rates))} (from {g(rates[0])} at the first "
            f"evaluation to {g(rates[-1])} at the last).")


def _where(record: dict, unit: str) -> str:
    """An evaluation's place in training: a whole epoch by its number; one part-way through an epoch (runs
    evaluated every so many steps, whose records count epochs in fractions) by its step and the epoch it fell in."""
    if unit not in record:
        return f"step {record['step']:,}"
    value = float(record[unit])
    if value.is_integer():
        return f"{unit} {value:g}"
    return f"step {record['step']:,} in {unit} {math.ceil(value)}" if "step" in record else f"{unit} {value:.2f}"


def classes(cm: np.ndarray, names: Sequence[str], weakest: int = 2, pairs: int = 3) -> str:
    """The weakest classes and the most confused pairs of a confusion matrix (rows true, columns predicted)."""
    cm = np.asarray(cm)
    per_class = np.diag(cm) / np.maximum(cm.sum(axis=1), 1)
    present = np.flatnonzero(cm.sum(axis=1) > 0)  # a class the test set lacks is neither weak nor best
    if present.size == 0:
        return "The test set is empty: no class to rank."
    order = present[np.argsort(per_class[present], kind="stable")]
    weak_ones = list(order[:weakest])
    weak_ones += [i for i in order[weakest:] if per_class[i] == per_class[weak_ones[-1]]]  # ties named too
    weak = ", ".join(f"{names[i]} ({100 * per_class[i]:.1f}%)" for i in weak_ones)
    best_ones = sorted(i for i in order if per_class[i] == per_class[order[-1]] and i not in weak_ones)
    off = cm.copy()
    np.fill_diagonal(off, 0)
    flat = np.argsort(off, axis=None, kind="stable")[::-1]
    ranked = [k for k in flat if off.flat[k] > 0]
    shown = ranked[:pairs] + [k for k in ranked[pairs:] if pairs and off.flat[k] == off.flat[ranked[pairs - 1]]]
    confused = [(int(k // len(names)), int(k % len(names))) for k in shown]  # ties with the last shown named too
    if best_ones:
        top = ", ".join(f"{names[i]} ({100 * per_class[i]:.1f}%)" for i in best_ones)
        best = f"; the best {'are' if len(best_ones) > 1 else 'is'} {top}"
    else:
        best = " (every class present is among them)"
    text = (f"The weakest class{'es are' if len(weak_ones) > 1 else ' is'} {weak}{best}, "
            f"over an overall test accuracy of {100 * np.trace(cm) / max(cm.sum(), 1):.2f}%.")
    if confused:
        text += f" The most frequent confusion{'s are' if len(confused) > 1 else ' is'} " + ", ".join(
            f"{names[t]} taken for {names[p]} ({cm[t, p]:,} of the {cm[t].sum():,} images of {names[t]})"
            for t, p in confused) + "."
    absent = [names[i] for i in range(len(names)) if i not in set(present.tolist())]
    if absent:
        text += f" The test set has no images of {', '.join(absent)}."
    return text


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def limit(name: str, rows: Sequence[dict], runs: Sequence[dict], threshold: float = 0.99) -> str:
    """What bounds a recurrent model's sweep, from its rows (as ``collapse`` reads them) and its runs
    (length, test_acc, outcome and, where recorded, train_time_s and eval_time_s): learning,
    where a length failed, else the time a run at the longest length tried took, and how much of it went
    to evaluating at the full length. Empty where the runs carry no times (sweeps written before them)."""
    rows = sorted(rows, key=lambda r: r["length"])
    failing = [r for r in rows if r["mean"] < threshold]
    at = failing[0]["length"] if failing else (rows[-1]["length"] if rows else None)
    there = [r for r in runs if r["length"] == at and isinstance(r.get("train_time_s"), (int, float))]
    if not there:
        return ""
    times = [_seconds(t) for t in sorted(r["train_time_s"] for r in there)]
    took = f"{times[0]} s" if len(times) == 1 else f"{times[0]} to {times[-1]} s"
    evals = [r for r in there if isinstance(r.get("eval_time_s"), (int, float)) and r["train_time_s"] > 0]
    share = (f", {100 * sum(r['eval_time_s'] for r in evals) / sum(r['train_time_s'] for r in evals):.0f}% of it "
             "evaluating the fixed eval set at the full length" if evals else "")
    whole = [r for r in there if r["outcome"] == "completed"]
    n = len(there)
    runs_there = "its one run" if n == 1 else f"its {n} runs"
    if failing:
        below = [r for r in there if r["test_acc"] < threshold]
        spent = sum(r in whole for r in below)
        return (f"What limits the {name} is learning: at T={at}, {len(below)} of {runs_there} ended below "
                f"{_pct(threshold)}, {spent} of them after their whole step budget; a run there took {took} of "
                f"training{share}.")
    outcomes = {o: sum(r["outcome"] == o for r in there) for o in sorted({r["outcome"] for r in there})}
    said = ", ".join(f"{k} {o}" for o, k in outcomes.items())
    budget = f"; of {runs_there}: {said}"
    return (f"Nothing tried limited the {name}'s learning: at its longest length, T={at}, a run took {took} of "
            f"training{share}{budget}.{_time_against_length(runs)}")


def _time_against_length(runs: Sequence[dict]) -> str:
    """How the mean training time per run moved from the shortest length to the longest, where both have times."""
    timed: dict[int, list[float]] = {}
    for r in runs:
        if isinstance(r.get("train_time_s"), (int, float)):
            timed.setdefault(r["length"], []).append(r["train_time_s"])
    if len(timed) < 2:
        return ""
    lo, hi = min(timed), max(timed)
    a, b = (sum(timed[t]) / len(timed[t]) for t in (lo, hi))
    trend = "grew" if b > a else "did not grow"
    return (f" The mean time per run {trend} from {_seconds(a)} s at T={lo} to {_seconds(b)} s at T={hi}"
            + (", so time bounds a longer sweep here." if b > a else "."))


def _seconds(t: float) -> str:
    return f"{t:,.0f}" if t >= 10 else f"{t:.1f}"


def against_published(accuracy: float, published: Sequence, lossy: bool = False, quick: bool = False,
                      subject: str | None = None) -> str:
    """This run's test accuracy (or ``subject``'s: "The course rung") beside the published figures for the same
    work (``Published`` records of its experiment), each with the difference in points; why they are not like for
    like, where they are not."""
    if not published:
        return ""
    whose = "its" if subject else "this run's"
    parts = []
    for p in published:
        if p.high is None:
            gap = 100 * (accuracy - p.accuracy)
            side = "above" if gap > 0 else "below" if gap < 0 else "level with"
            parts.append(f"{_pct(p.accuracy)} ({p.what}): {whose} {_pct(accuracy)} is "
                         + (f"{abs(gap):.2f} points {side} it" if gap else "level with it"))
        else:
            where = ("within that range" if p.accuracy <= accuracy <= p.high else
                     f"{100 * (accuracy - p.high):.2f} points above it" if accuracy > p.high else
                     f"{100 * (p.accuracy - accuracy):.2f} points below it")
            parts.append(f"{_pct(p.accuracy)} to {_pct(p.high)} ({p.what}): {whose} {_pct(accuracy)} is {where}")
    lead = f"{subject}, against the figures published for the same work: " if subject else \
        "Published for the same work: "
    text = lead + "; ".join(parts) + "."
    if lossy:
        text += (" This run's images are the JPEG copy of CIFAR-10 and the published figures were measured on the "
                 "lossless files, so the difference includes what the compression costs: not a like-for-like "
                 "comparison.")
    if quick:
        text += " This is a --quick run (a few steps on a subset): its accuracy says nothing about the recipe's."
    return text


def agreement(max_rel: float, steps: int, dtype: str, what: str = "training loss") -> str:
    """How closely the two engines' per-step figures agree, against the precision they were computed in."""
    eps = float(np.finfo(dtype).eps)
    if max_rel == 0:
        return (f"The two engines' {what} was identical, bit for bit, at every one of the {steps:,} steps "
                f"({dtype}).")
    ratio = max_rel / eps
    verdict = ("the NumPy network computes what PyTorch computes, the difference being rounding alone"
               if ratio < 1e4 else
               "rounding differences grew over the steps (a chaotic process amplifies them), so the curves "
               "agree in shape rather than in every digit" if max_rel < 0.5 else
               "the engines' runs parted: their results agree only as two seeds of one recipe would")
    return (f"The two engines' {what} differed by at most {max_rel:.1e} (relative) over {steps:,} steps, "
            f"{ratio:,.0f} times {dtype}'s machine epsilon ({eps:.1e}): {verdict}.")


def parting(rel: Sequence[float], dtype: str, threshold: float = 1e-3) -> str:
    """When two engines' per-step relative differences (in step order, from step 1) first passed
    ``threshold``: how long the two runs stayed one run, and, in single precision, how to tell round-off
    from a fault. Empty where they never passed it."""
    rel = np.asarray(rel, dtype=np.float64)
    above = np.flatnonzero(~(rel <= threshold))  # NaN (a non-finite step) counts as parted
    if not len(above):
        return ""
    step = int(above[0]) + 1
    text = (f"The difference first passed {threshold:.0e} at step {step:,}"
            + (f", after {step - 1:,} step{'s' if step != 2 else ''} within it" if step > 1 else "") + ".")
    if np.finfo(dtype).bits < 64:
        text += (f" In {dtype}, round-off alone can tip a near tie (a ReLU at zero, a max-pool's winner) the other "
                 "way in one engine and send its gradient elsewhere, so two exact implementations part; the same "
                 "comparison in float64 (`--set settings=dtype=float64,...`) tells round-off from a fault.")
    return text


def collapse(name: str, rows: Sequence[dict], threshold: float = 0.99, chance: float = 0.1) -> str:
    """Where a recurrent model stops learning palindromes, from a sweep's rows (per length T: the mean,
    min, max and count of the seeds' test accuracies), and how widely its seeds spread."""
    rows = sorted(rows, key=lambda r: r["length"])
    if not rows:
        return f"The {name} has no finished runs yet."
    count = lambda r: f"{r['n']} seed{'s' if r['n'] != 1 else ''}"  # noqa: E731 - of the length quoted
    failing = [r for r in rows if r["mean"] < threshold]
    if not failing:
        last = rows[-1]
        seeds = count(last) if len({r["n"] for r in rows}) == 1 else f"{min(r['n'] for r in rows)} to " \
            f"{max(r['n'] for r in rows)} seeds"
        text = (f"The {name} learnt every length tried (mean of {seeds} at least {_pct(threshold)} up to "
                f"T={last['length']}, {_pct(last['mean'])} there): where it breaks lies beyond this sweep.")
    else:
        first = failing[0]
        seeds = count(first)
        held = [r for r in rows if r["length"] < first["length"]]
        figures = f"mean {_pct(first['mean'])} over {seeds}, seeds from {_pct(first['min'])} to {_pct(first['max'])}"
        text = (f"The {name} held a mean of at least {_pct(threshold)} up to T={held[-1]['length']} and first fell "
                f"below it at T={first['length']} ({figures})" if held else
                f"The {name} reached a mean of {_pct(threshold)} at no length tried: at T={first['length']}, the "
                f"shortest, its mean was {_pct(first['mean'])} over {seeds} (seeds from {_pct(first['min'])} to "
                f"{_pct(first['max'])})")
        near_chance = [r for r in rows if r["mean"] < chance + 0.05]
        if near_chance:
            text += (f"; it is near chance ({_pct(chance)}) by T={near_chance[0]['length']} "
                     f"(mean {_pct(near_chance[0]['mean'])})")
        text += "."
        recovered = [r for r in rows if r["length"] > first["length"] and r["mean"] >= threshold]
        if recovered:
            text += (f" Longer lengths passed again (T={', '.join(str(r['length']) for r in recovered)}): "
                     "the seeds, not the length alone, decide.")
    widest = max(rows, key=lambda r: r["max"] - r["min"])
    if widest["max"] - widest["min"] > 0.01 and widest["n"] > 1:
        text += (f" Its seeds spread most at T={widest['length']}: from {_pct(widest['min'])} to "
                 f"{_pct(widest['max'])}.")
    return text
