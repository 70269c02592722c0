"""Assemble a report from loaded frames: the sections, their raw tables and their figures.

No file I/O: `write.py` loads the run(s), calls `compose_report`, then saves what it returns.
The first screen answers the study's question: the question (the study's description), the
finding (best variant or trial; deltas against the baseline with their intervals, in words
that follow the interval) and its key figure. Then the ablation table or leaderboard +
importance, Pareto front, EDFs (with how the trials were sampled), learning curves, compute
ledger and excluded trials; the run's metadata comes last (`Document.header`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from reports import columns as C
from reports import figures as F
from reports import formatting as fmt
from reports import tables as T
from reports.ledger import compute_ledger, ledger_table
from reports.render import Document, FigureRef, Section
from reports.stats import MIN_BCA_SAMPLES, NO_INTERVAL

LEADERBOARD_ROWS = 20
MAX_EDF_FACTORS = 8
MAX_EDF_VALUES = 8  # a factor with more distinct values is binned (numbers) or left out (text)
EDF_BINS = 3  # quantile bins of a continuous factor's EDF
MIN_IMPORTANCE_TRIALS = 20  # fewer complete trials: fANOVA shares get a caveat
DASH_NOTE = ("“—” in a table means not applicable: a parameter that was inactive in that trial, "
             "or a GSA setting of a conv net.")


@dataclass(frozen=True)
class Study:
    """What composing needs to know about the run(s): kind, baseline, objectives, design fields."""

    title: str
    description: str
    kind: str
    baseline: str | None
    objectives: Mapping[str, str]
    space_fields: tuple[str, ...]
    header: tuple[tuple[str, str], ...]
    continuous: tuple[str, ...] = ()  # float ranges without a step: EDFs over quantile bins
    notes: tuple[str, ...] = ()  # extra notes under the first table (e.g. fields a compared run did not record)
    sampler: str = ""  # how a search drew its trials ("tpe", "random", ...; "" when not recorded)
    pruner: str = ""  # what stopped trials early ("median", "asha", "none", ...; "" when not recorded)
    warnings: tuple[str, ...] = ()  # shown above everything (e.g. runs compared that are not like for like)


@dataclass(frozen=True)
class ReportParts:
    """A composed report: the document, raw tables (to CSV) and figures (to PNG) by file stem."""

    document: Document
    tables: Mapping[str, pd.DataFrame]
    figures: Mapping[str, Figure]


def primary_metric(study: Study) -> str:
    """The first objective to maximise (an accuracy), val_acc when none is named."""
    return next((name for name, mode in study.objectives.items() if mode == "max"), C.VAL_ACC)


def pareto_objectives(study: Study) -> dict[str, str]:
    """The study's objectives, plus GMACs (min) so that accuracy is weighed against compute."""
    objectives = {primary_metric(study): "max", C.GMACS: "min"}
    objectives.update(study.objectives)
    return objectives


ACCURACIES = (C.VAL_ACC, C.TEST_ACC)  # shown right after who a row is, before compute and design fields


def _shown(frame: pd.DataFrame, study: Study, metrics: tuple[str, ...], tail: tuple[str, ...] = (),
           lead: tuple[str, ...] = (C.RANK, C.RUN, C.VARIANT, C.SEED)) -> pd.DataFrame:
    """A table for people: who (rank, run, variant, seed), then how well and at what cost
    (`metrics`), then the design fields, then `tail`; so accuracy is never off to the right."""
    lead_cols = [c for c in lead if c in frame.columns]
    head = [c for c in dict.fromkeys(metrics) if c in frame.columns and c not in lead_cols]
    fields = [c for c in study.space_fields if c in frame.columns and c not in lead_cols + head]
    rest = [c for c in dict.fromkeys(tail) if c in frame.columns and c not in lead_cols + head + fields]
    return fmt.format_table(frame[lead_cols + head + fields + rest])


def _state_note(trials: pd.DataFrame) -> list[str]:
    """Warnings for the finding: trials left out, and budgets that differ."""
    notes = []
    counts = trials[C.STATE].value_counts()
    left = [f"{int(counts[s])} {s}" for s in C.STATES[1:] if counts.get(s, 0)]
    if left:
        notes.append(f"Not compared: {', '.join(left)} of {len(trials)} trials (see Excluded trials); only "
                     f"complete trials enter the comparisons.")
    budgets = sorted(int(b) for b in trials[C.BUDGET_EPOCHS].unique())
    if len(budgets) > 1:
        notes.append(f"Trials had different budgets ({', '.join(map(str, budgets))} epochs): "
                     "accuracies across budgets are not like for like.")
    return notes


def _how(row: pd.Series, base_n: int) -> str:
    """Which interval over which seeds: 'paired t over 3 seeds', 'Welch t, 2 vs 3 seeds'."""
    n = int(row[C.N_SEEDS])
    if row[C.PAIRED]:
        return f"{row[C.CI_METHOD]} over {n} seed{'s' if n != 1 else ''}"
    return f"{row[C.CI_METHOD]}, {n} vs {base_n} seeds"


def _ties(values: pd.Series) -> pd.Series:
    """Mask of the values equal to the first (the best of a sorted column), up to float noise."""
    return pd.Series(np.isclose(values.to_numpy(dtype=float), float(values.iloc[0]), rtol=0.0, atol=1e-12),
                     index=values.index)


def delta_sentence(row: pd.Series, baseline: str | None, metric: str, base_n: int) -> str:
    """One variant's delta against the baseline in words that follow its interval: higher or
    lower only when the 95% interval excludes 0, "no clear difference" when it includes 0, and
    no verdict from a single seed (no interval)."""
    variant, delta = row[C.VARIANT], row[C.DELTA]
    how = _how(row, base_n)
    if row[C.CI_METHOD] == NO_INTERVAL or pd.isna(row[C.DELTA_LO]):
        return (f"{variant}: {fmt.pp(delta)} {metric} against {baseline}, but with one seed on a side "
                f"({int(row[C.N_SEEDS])} vs {base_n}) there is no interval: not evidence either way.")
    interval = f"95% CI {fmt.ci(row[C.DELTA_LO], row[C.DELTA_HI])}"
    if row[C.DELTA_LO] > 0 or row[C.DELTA_HI] < 0:
        side = "higher" if row[C.DELTA_LO] > 0 else "lower"
        return f"{variant}: {metric} {side} than {baseline} by {100 * abs(delta):.2f} pp ({interval}; {how})."
    return (f"{variant}: no clear difference from {baseline}: {fmt.pp(delta)} {metric}, {interval} includes 0 "
            f"({how}).")


def _ablation_finding(study: Study, table: pd.DataFrame) -> list[str]:
    metric = primary_metric(study)
    base_rows = table[table[C.VARIANT] == study.baseline]
    base_n = int(base_rows[C.N_SEEDS].iloc[0]) if len(base_rows) else 0
    others = table[(table[C.VARIANT] != study.baseline) & table[C.DELTA].notna()]
    bullets = _verdict(others, study.baseline)  # the answer first, then what it rests on
    ranked = table.dropna(subset=[C.mean_col(metric)]).sort_values(C.mean_col(metric), ascending=False,
                                                                    kind="stable")
    if len(ranked):
        best = ranked.iloc[0]
        tied = [str(v) for v in ranked.loc[_ties(ranked[C.mean_col(metric)]), C.VARIANT][1:]]
        bullets.append(f"Highest mean {metric}: {best[C.VARIANT]}, "
                       f"{fmt.mean_std(best[C.mean_col(metric)], best[C.std_col(metric)])} over "
                       f"{best[C.N_SEEDS]} seed{'s' if best[C.N_SEEDS] != 1 else ''} "
                       f"({fmt.macs(best[C.GMACS], table[C.GMACS])}, {fmt.count(best[C.PARAMS])} params)"
                       + (f"; tied with {', '.join(tied)}." if tied else "."))
    bullets += [delta_sentence(row, study.baseline, metric, base_n) for _, row in others.iterrows()]
    return bullets


def _verdict(others: pd.DataFrame, baseline: str | None) -> list[str]:
    """The one-line answer: which variants differ clearly from the baseline, or that none does and
    how large a difference the intervals could have missed."""
    with_ci = others[others[C.DELTA_LO].notna()]
    if with_ci.empty:
        return []
    clear = with_ci[(with_ci[C.DELTA_LO] > 0) | (with_ci[C.DELTA_HI] < 0)]
    chance = (f" With {len(with_ci)} intervals at 95% each, about one in 20 would exclude 0 by chance even with "
              f"no real difference."
              if len(with_ci) >= 3 and len(clear) else "")
    if len(clear):
        names = ", ".join(f"{r[C.VARIANT]} ({'higher' if r[C.DELTA_LO] > 0 else 'lower'})"
                          for _, r in clear.iterrows())
        rest = [str(v) for v in with_ci[C.VARIANT] if v not in set(clear[C.VARIANT])]
        unclear = f"; no clear difference for {', '.join(rest)}" if rest else ""
        return [f"Clear differences from {baseline} at 95%: {names}{unclear}.{chance}"]
    half = ((with_ci[C.DELTA_HI] - with_ci[C.DELTA_LO]) / 2.0).to_numpy(dtype=float)
    return [f"No variant differs clearly from {baseline}: every 95% interval includes 0, and they reach "
            f"±{100 * half.min():.2f} to ±{100 * half.max():.2f} pp, so differences smaller than that are "
            f"not resolved by these seeds."]


def _search_finding(study: Study, trials: pd.DataFrame) -> list[str]:
    metric = primary_metric(study)
    board = T.leaderboard(trials, metric)
    if board.empty or board[metric].isna().all():
        return ["No trial completed: there is nothing to compare."]
    macs = board[C.GMACS]
    tied = board[_ties(board[metric])]
    best = tied.sort_values(C.GMACS, kind="stable").iloc[0]  # of equals, the cheapest
    config = ", ".join(f"{f}={fmt.plain(best[f])}" for f in study.space_fields
                       if f in board.columns and fmt.plain(best[f]) != fmt.DASH)
    where = f" in run {best[C.RUN]}" if C.RUN in board.columns else ""
    test = f"test {fmt.pct(best[C.TEST_ACC])}; " if metric != C.TEST_ACC else ""
    bullets = [f"Best {metric}: {fmt.pct(best[metric])}, by {best[C.VARIANT]}{where} ({test}"
               f"{fmt.macs(best[C.GMACS], macs)}, {fmt.count(best[C.PARAMS])} params)"
               + (f": {config}." if config else ".")]
    if len(tied) > 1:
        others = [str(v) for v in tied[C.VARIANT] if v != best[C.VARIANT]]
        bullets.append(f"Tied on {metric} with {', '.join(others)}; {best[C.VARIANT]} is the cheapest of them.")
    objectives = pareto_objectives(study)
    front = T.pareto_front(trials, objectives)
    if len(front):
        cheap = front.sort_values(C.GMACS, kind="stable").iloc[0]
        bullets.append(f"Pareto front over {', '.join(f'{k} ({v})' for k, v in objectives.items())}: "
                       f"{len(front)} of {len(board)} complete trials; the cheapest reaches "
                       f"{fmt.pct(cheap[metric])} at {fmt.macs(cheap[C.GMACS], macs)}.")
    if C.SEED in board.columns and board[C.SEED].nunique() <= 1:
        bullets.append("Each trial ran once (one seed): differences between trials include seed-to-seed "
                       "noise, which a search does not measure.")
    return bullets


def _finding(study: Study, trials: pd.DataFrame, ablation: pd.DataFrame | None) -> Section:
    bullets = _ablation_finding(study, ablation) if ablation is not None else _search_finding(study, trials)
    bullets += _state_note(trials)
    key = FigureRef("ablation_bars", f"Δ {primary_metric(study)} of each variant against {study.baseline}, "
                                     f"with its 95% CI.") if ablation is not None else FigureRef(
        "acc_vs_gmacs", f"{primary_metric(study)} against compute; dashed, circled: the Pareto front.")
    return Section("Finding", bullets=tuple(bullets), figures=(key,), lead=True)


def _mean_std(table: pd.DataFrame, col: str) -> list[str]:
    return [fmt.mean_std(m, s) for m, s in zip(table[C.mean_col(col)], table[C.std_col(col)])]


def _method_cell(row: pd.Series, baseline: str | None) -> str:
    if row[C.VARIANT] == baseline:
        return "—"
    if row[C.CI_METHOD] == NO_INTERVAL:
        return "none (1 seed)"
    return str(row[C.CI_METHOD] or "—")


def _ablation_section(study: Study, table: pd.DataFrame) -> Section:
    metric = primary_metric(study)
    shown = pd.DataFrame({
        "variant": table[C.VARIANT],
        "seeds": table[C.N_SEEDS].astype(str),
        "val acc": _mean_std(table, C.VAL_ACC),
        "test acc": _mean_std(table, C.TEST_ACC),
        f"Δ {metric}": ["baseline" if v == study.baseline else fmt.pp(d)
                        for v, d in zip(table[C.VARIANT], table[C.DELTA])],
        "95% CI": ["—" if v == study.baseline else fmt.ci(lo, hi)
                   for v, lo, hi in zip(table[C.VARIANT], table[C.DELTA_LO], table[C.DELTA_HI])],
        "interval": [_method_cell(row, study.baseline) for _, row in table.iterrows()],
    })
    sizes = fmt.format_table(table[[C.GMACS, C.PARAMS]])
    shown = pd.concat([shown, sizes], axis=1)
    texts = [f"Mean ± sample std over seeds of complete trials. Δ is the change in {metric} against "
             f"{study.baseline}, with a 95% confidence interval: a paired t-interval over the per-seed "
             f"differences when both ran the same seeds, Welch's t-interval otherwise (a BCa bootstrap "
             f"only from {MIN_BCA_SAMPLES} seeds on). With one seed on a side there is no interval."]
    few = table.loc[table[C.FEW_SEEDS] & (table[C.N_SEEDS] > 0), C.VARIANT].tolist()
    if few:
        texts.append(f"Fewer than {C.MIN_SEEDS} complete seeds: {', '.join(few)}; their intervals are wide "
                     "and lean hard on the noise being normal.")
    return Section("Ablation", paragraphs=tuple(texts), table=shown, bullets=study.notes)


def _search_sections(study: Study, trials: pd.DataFrame, importance: pd.DataFrame | None) -> list[Section]:
    metric = primary_metric(study)
    full = T.leaderboard(trials, metric)
    board = full.head(LEADERBOARD_ROWS)
    which = f"All {len(full)}" if len(full) <= LEADERBOARD_ROWS else f"Top {LEADERBOARD_ROWS} of {len(full)}"
    sections = [Section("Leaderboard", paragraphs=(f"{which} complete trials by {metric}, best first.", DASH_NOTE),
                        table=_shown(board, study, (metric, *ACCURACIES, C.GMACS, C.PARAMS), (C.WALL_S,),
                                     lead=(C.RANK, C.RUN, C.VARIANT)),
                        bullets=study.notes)]
    if importance is None:
        return sections
    note = importance.attrs.get("note", "")
    if importance.empty:
        sections.append(Section("Parameter importance", paragraphs=(f"Not computed: {note}.",
                                                                    *_left_out_text(importance))))
    else:
        shown = fmt.format_table(importance.reset_index(), {c: fmt.sig3 for c in importance.columns})
        sections.append(Section("Parameter importance", paragraphs=_importance_text(importance), table=shown))
    return sections


def _left_out_text(importance: pd.DataFrame) -> tuple[str, ...]:
    left_out = importance.attrs.get("left_out") or {}
    if not left_out:
        return ()
    return ("Left out (fANOVA needs a parameter set, and varying, in every complete trial): "
            + "; ".join(f"{p}: {why}" for p, why in left_out.items()) + ".",)


def _importance_text(importance: pd.DataFrame) -> tuple[str, ...]:
    """What the importance table is, which parameters it leaves out and why, and a caveat."""
    texts = [f"Share of variance explained ({importance.attrs.get('note', '')}).", *_left_out_text(importance)]
    n = importance.attrs.get("n_trials")
    if n is not None and n < MIN_IMPORTANCE_TRIALS:
        texts.append(f"Caveat: only {n} complete trials; fANOVA shares are rough below about "
                     f"{MIN_IMPORTANCE_TRIALS} and can reorder as trials are added. Read them as a hint.")
    return tuple(texts)


def _numeric(values: pd.Series) -> bool:
    known = [v for v in values.tolist() if not pd.isna(v)]
    return bool(known) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in known)


def _edf_factors(study: Study, trials: pd.DataFrame) -> list[tuple[str, int | None]]:
    """(factor, bins) per EDF: bins=None draws one curve per value; a continuous factor (a float
    range without a step, or numbers with too many values) gets EDF_BINS quantile bins."""
    if study.kind == "ablation":
        return [(C.VARIANT, None)]
    done = T.complete_trials(trials)
    varying: list[tuple[str, int | None]] = []
    for name in study.space_fields:
        if name not in done.columns:
            continue
        values = done[name]
        n_values = values.map(T.value_label).nunique()
        if n_values < 2:
            continue
        known = values.dropna()
        fractional = _numeric(values) and not all(float(v).is_integer() for v in known)
        if name in study.continuous or (_numeric(values) and (n_values > MAX_EDF_VALUES or
                                                              (fractional and n_values > EDF_BINS + 1))):
            varying.append((name, EDF_BINS))
        elif n_values <= MAX_EDF_VALUES:
            varying.append((name, None))
    return varying[:MAX_EDF_FACTORS]


ADAPTIVE_SAMPLERS = {"tpe": "TPE", "cmaes": "CMA-ES", "nsga2": "NSGA-II"}  # they sample where trials did well


def _edf_text(study: Study, trials: pd.DataFrame) -> tuple[str, ...]:
    """What the EDFs are, how the trials were sampled and what that does to the curves."""
    texts = ["Empirical distribution of error (1 - accuracy) per design choice, after Radosavovic et al., "
             "On Network Design Spaces for Visual Recognition: a curve further left is a better choice. Their "
             "EDFs assume trials drawn uniformly at random from the design space."]
    if study.kind == "ablation":
        texts.append("Here every variant × seed was trained to the full budget, so each curve is one variant's "
                     "seeds: it shows seed-to-seed spread around that variant, not a sample of a design space.")
        return tuple(texts)
    counts = trials[C.STATE].value_counts()
    pruned, infeasible = int(counts.get(C.PRUNED, 0)), int(counts.get(C.INFEASIBLE, 0))
    names = [n.strip() for n in study.sampler.split(",") if n.strip()]
    adaptive = [ADAPTIVE_SAMPLERS[n] for n in names if n in ADAPTIVE_SAMPLERS]
    if adaptive:
        texts.append(f"These trials were not: {', '.join(adaptive)} draws more trials near those that scored well. "
                     "Values it favoured gather more, and better, trials, and rarely drawn values rest on few, so "
                     "the gaps between choices are exaggerated. Read the curves as where this search went, not as "
                     "the design space's distribution.")
    elif names and all(n in ("random", "grid") for n in names):
        texts.append("These trials were " + ("drawn uniformly at random, as the method assumes."
                                             if names == ["random"] else
                                             "a grid (or random draws): each value met the others evenly, as the "
                                             "method assumes."))
    else:
        texts.append("How these trials were sampled is not recorded (no sampler in study.yaml): read the curves "
                     "as where this search went, not as the design space's distribution.")
    cut = []
    if pruned:
        by = f"the {study.pruner} pruner" if study.pruner else "a pruner"
        cut.append(f"{pruned} pruned trial(s) (stopped early by {by})")
    if infeasible:
        cut.append(f"{infeasible} infeasible trial(s) (over the compute budget, never trained)")
    if cut:
        texts.append(f"Only complete trials enter the curves; {' and '.join(cut)} are left out. Pruning removes the "
                     "worst trials first, so each curve lacks its right-hand (high-error) tail and looks better "
                     "than the sampled population was.")
    return tuple(texts)


def _pareto_section(study: Study, trials: pd.DataFrame, ablation: pd.DataFrame | None
                    ) -> tuple[Section, pd.DataFrame]:
    """The front's table and figures: on variant means in an ablation, on trials in a search."""
    metric = primary_metric(study)
    star = f"; star: the baseline ({study.baseline})" if study.baseline else ""
    params_ref = FigureRef("acc_vs_params", f"{metric} against parameters; dashed, circled: the front on "
                                            f"params{star}.")
    if ablation is not None:
        objectives = {C.mean_col(metric): "max", C.GMACS: "min"}
        front = T.ablation_front(ablation, objectives)
        shown = pd.DataFrame({"variant": front[C.VARIANT], "seeds": front[C.N_SEEDS].astype(str),
                              "val acc": _mean_std(front, C.VAL_ACC), "test acc": _mean_std(front, C.TEST_ACC)})
        shown = pd.concat([shown, fmt.format_table(front[[C.GMACS, C.PARAMS]])], axis=1)
        text = (f"Variants whose mean {metric} over seeds no other variant's mean beats at equal or lower "
                f"compute: {len(front)} of {int(ablation[C.mean_col(metric)].notna().sum())} variants. A variant "
                f"is one point (its mean ± std), not one point per seed.")
        refs = (FigureRef("acc_vs_gmacs", f"Mean {metric} ± std over seeds against compute (faint dots: single "
                                          f"seeds); dashed, circled: the Pareto front of the means{star}."),
                FigureRef("acc_vs_params", f"Mean {metric} ± std over seeds against parameters; dashed, circled: "
                                           f"the front of the means on params{star}."))
        return Section("Pareto front", paragraphs=(text,), table=shown, figures=refs), front
    objectives = pareto_objectives(study)
    front = T.pareto_front(trials, objectives)
    text = (f"Complete trials that no other complete trial beats on every objective, "
            f"{', '.join(f'{k} ({v})' for k, v in objectives.items())}: {len(front)} of "
            f"{len(T.complete_trials(trials))}.")
    table = _shown(front, study, (metric, *ACCURACIES, C.GMACS, C.PARAMS, C.ACT_MB),
                   lead=(C.RUN, C.VARIANT))  # one seed per search trial: no seed column
    return Section("Pareto front", paragraphs=(text,), table=table, figures=(params_ref,)), front


def compose_report(study: Study, trials: pd.DataFrame, curves: pd.DataFrame | None,
                   importance: pd.DataFrame | None = None) -> ReportParts:
    """Tables, figures and the document of one report over `trials` (and `curves` when known)."""
    tables: dict[str, pd.DataFrame] = {}
    figures: dict[str, Figure] = {}
    sections: list[Section] = []
    metric = primary_metric(study)
    by_variant = study.kind == "ablation"
    colors = F.variant_colors(trials[C.VARIANT], study.baseline)  # one colour per variant everywhere
    ablation = None
    if study.kind == "ablation":
        ablation = T.ablation_table(trials, baseline=study.baseline, metric=metric)
        tables["ablation"] = ablation
        figures["ablation_bars"] = F.ablation_bars(ablation, baseline=study.baseline, metric=metric, colors=colors)
        sections.append(_ablation_section(study, ablation))
        for x, stem in ((C.GMACS, "acc_vs_gmacs"), (C.PARAMS, "acc_vs_params")):
            figures[stem] = F.ablation_vs_compute(ablation, trials, x=x, metric=metric, baseline=study.baseline,
                                                  colors=colors)
    else:
        tables["leaderboard"] = T.leaderboard(trials, metric)
        if importance is not None and not importance.empty:
            tables["importance"] = importance.reset_index()
        sections += _search_sections(study, trials, importance)
        for x, stem in ((C.GMACS, "acc_vs_gmacs"), (C.PARAMS, "acc_vs_params")):
            figures[stem] = F.accuracy_vs_compute(trials, x=x, metric=metric, baseline=study.baseline,
                                                  by_variant=by_variant, colors=colors)

    pareto, tables["pareto"] = _pareto_section(study, trials, ablation)
    sections.append(pareto)

    refs = []
    for factor, bins in _edf_factors(study, trials):
        edf = T.error_edf(trials, factor, metric, bins=bins)
        stem = f"edf_{fmt.file_stem(factor)}"
        tables[stem] = edf
        figures[stem] = F.edf_figure(edf, factor, colors=colors if factor == C.VARIANT else None)
        how = f" ({factor} continuous: {EDF_BINS} quantile bins)" if bins else ""
        refs.append(FigureRef(stem, f"Error EDF by {factor}{how}: the share of trials at or below each error."))
    sections.append(Section("Error EDFs", paragraphs=_edf_text(study, trials), figures=tuple(refs)))

    if curves is not None and len(curves):
        figures["learning_curves"] = F.learning_curves(curves, trials, metric=C.VAL_ACC, baseline=study.baseline,
                                                       by_variant=by_variant, colors=colors)
        what = {C.VARIANT: "thin: single seeds; thick: each variant's mean over its complete seeds",
                C.RUN: "coloured by run"}.get(F.colour_key(trials, by_variant),
                                              f"coloured: the {F.TOP_TRIALS} best complete trials; grey: the others")
        sections.append(Section("Learning curves", figures=(
            FigureRef("learning_curves", f"Validation accuracy per epoch ({what}); pruned trials faint, failed "
                                         f"dotted."),)))
    else:
        sections.append(Section("Learning curves", paragraphs=("No per-epoch records (curves.csv) in the run.",)))

    ledger = compute_ledger(trials)
    tables["ledger"] = ledger.to_frame()
    sections.append(Section("Compute ledger", table=ledger_table(ledger)))

    excluded = T.excluded_trials(trials)
    tables["excluded"] = excluded
    if excluded.empty:
        sections.append(Section("Excluded trials", paragraphs=("None: every trial trained to the full budget.",)))
    else:
        sections.append(Section("Excluded trials", paragraphs=(
            "Pruned, failed and infeasible trials: left out of every accuracy comparison above.",),
            table=fmt.format_table(excluded)))

    sections.insert(0, _finding(study, trials, ablation))
    doc = Document(study.title, study.description, study.header, tuple(sections), warnings=study.warnings)
    return ReportParts(doc, tables, figures)
