"""Assemble a report from loaded frames: the sections, their raw tables and their figures.

No file I/O: `write.py` loads the run(s), calls `compose_report`, then saves what it returns.
Sections: summary, ablation table or leaderboard + importance, Pareto front, EDFs, learning
curves, compute ledger, excluded trials.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

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
    notes: tuple[str, ...] = ()  # extra summary bullets (e.g. fields a compared run did not record)


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


def _shown(frame: pd.DataFrame, study: Study, extra: tuple[str, ...],
           lead: tuple[str, ...] = (C.RANK, C.RUN, C.VARIANT, C.SEED)) -> pd.DataFrame:
    lead_cols = [c for c in lead if c in frame.columns]
    fields = [c for c in study.space_fields if c in frame.columns]
    rest = [c for c in dict.fromkeys(extra) if c in frame.columns and c not in lead_cols + fields]
    return fmt.format_table(frame[lead_cols + fields + rest])


def _summary(study: Study, trials: pd.DataFrame, ablation: pd.DataFrame | None) -> Section:
    counts = trials[C.STATE].value_counts()
    bullets = [f"{len(trials)} trials: " + ", ".join(f"{int(counts.get(s, 0))} {s}" for s in C.STATES)
               + "; only complete trials enter accuracy comparisons."]
    budgets = sorted(int(b) for b in trials[C.BUDGET_EPOCHS].unique())
    if len(budgets) > 1:
        bullets.append(f"Trials had different budgets ({', '.join(map(str, budgets))} epochs): "
                       "accuracies across budgets are not like for like.")
    metric = primary_metric(study)
    if ablation is not None:
        ranked = ablation.dropna(subset=[C.mean_col(metric)]).sort_values(C.mean_col(metric), ascending=False)
        if len(ranked):
            best = ranked.iloc[0]
            bullets.append(f"Best variant by mean {metric}: {best[C.VARIANT]} "
                           f"({fmt.mean_std(best[C.mean_col(metric)], best[C.std_col(metric)])} "
                           f"over {best[C.N_SEEDS]} seeds).")
        base_rows = ablation[ablation[C.VARIANT] == study.baseline]
        base_n = int(base_rows[C.N_SEEDS].iloc[0]) if len(base_rows) else 0
        for _, row in ablation.iterrows():
            if row[C.VARIANT] == study.baseline or pd.isna(row[C.DELTA]):
                continue
            bullets.append(_delta_bullet(row, study.baseline, metric, min(int(row[C.N_SEEDS]), base_n)))
        few = ablation.loc[ablation[C.FEW_SEEDS], C.VARIANT].tolist()
        if few:
            bullets.append(f"Fewer than {C.MIN_SEEDS} complete seeds, read with care: {', '.join(few)}.")
    else:
        board = T.leaderboard(trials, metric)
        if len(board):
            best = board.iloc[0]
            bullets.append(f"Best trial by {metric}: {best[C.VARIANT]} ({fmt.pct(best[metric])}, "
                           f"{fmt.sig3(best[C.GMACS])} GMACs, {fmt.count(best[C.PARAMS])} params).")
    objectives = pareto_objectives(study)
    front = T.pareto_front(trials, objectives)
    bullets.append(f"Pareto front over {', '.join(f'{k} ({v})' for k, v in objectives.items())}: "
                   f"{len(front)} of {len(T.complete_trials(trials))} complete trials.")
    bullets += [*study.notes, DASH_NOTE]
    return Section("Summary", bullets=tuple(bullets))


def _delta_bullet(row: pd.Series, baseline: str | None, metric: str, n_seeds: int) -> str:
    """One variant's delta against the baseline, with its 95% interval and whether it excludes 0;
    with one seed on a side there is no interval, and the line says so."""
    if row[C.CI_METHOD] == NO_INTERVAL:
        return (f"{row[C.VARIANT]}: {fmt.pp(row[C.DELTA])} {metric} against {baseline}; with one seed on a side "
                "there is no interval: not evidence either way.")
    interval = fmt.ci(row[C.DELTA_LO], row[C.DELTA_HI])
    where = "excludes" if row[C.DELTA_LO] > 0 or row[C.DELTA_HI] < 0 else "includes"
    return (f"{row[C.VARIANT]}: {fmt.pp(row[C.DELTA])} {metric} against {baseline}, 95% CI {interval} "
            f"({row[C.CI_METHOD]}, n={n_seeds} seeds; the interval {where} 0).")


def _mean_std(table: pd.DataFrame, col: str) -> list[str]:
    return [fmt.mean_std(m, s) for m, s in zip(table[C.mean_col(col)], table[C.std_col(col)])]


def _ablation_section(study: Study, table: pd.DataFrame) -> Section:
    metric = primary_metric(study)
    shown = pd.DataFrame({
        "variant": table[C.VARIANT],
        "seeds": table[C.N_SEEDS].astype(str),
        "params": table[C.PARAMS].map(fmt.count),
        "GMACs": table[C.GMACS].map(fmt.sig3),
        "val acc": _mean_std(table, C.VAL_ACC),
        "test acc": _mean_std(table, C.TEST_ACC),
        f"Δ {metric}": ["baseline" if v == study.baseline else fmt.pp(d)
                        for v, d in zip(table[C.VARIANT], table[C.DELTA])],
        "95% CI": ["—" if v == study.baseline else fmt.ci(lo, hi)
                   for v, lo, hi in zip(table[C.VARIANT], table[C.DELTA_LO], table[C.DELTA_HI])],
        "interval": ["—" if v == study.baseline else m or "—" for v, m in zip(table[C.VARIANT], table[C.CI_METHOD])],
        "note": [f"< {C.MIN_SEEDS} seeds" if f else "" for f in table[C.FEW_SEEDS]],
    })
    text = (f"Mean ± sample std over seeds of complete trials; Δ is the change in {metric} against "
            f"{study.baseline}, with a 95% CI: a paired t-interval when both ran the same seeds, Welch's "
            f"t-interval otherwise (a BCa bootstrap only from {MIN_BCA_SAMPLES} seeds on); none from one seed.")
    return Section("Ablation", paragraphs=(text,), table=shown,
                   figures=(FigureRef("ablation_bars", f"Δ {metric} per variant against {study.baseline}, "
                                                       "with 95% CI whiskers."),))


def _search_sections(study: Study, trials: pd.DataFrame, importance: pd.DataFrame | None) -> list[Section]:
    metric = primary_metric(study)
    full = T.leaderboard(trials, metric)
    board = full.head(LEADERBOARD_ROWS)
    extra = (C.PARAMS, C.GMACS, metric, C.VAL_ACC, C.TEST_ACC, C.EPOCHS, C.WALL_S)
    which = f"All {len(full)}" if len(full) <= LEADERBOARD_ROWS else f"Top {LEADERBOARD_ROWS} of {len(full)}"
    sections = [Section("Leaderboard", paragraphs=(f"{which} complete trials by {metric}, best first.",),
                        table=_shown(board, study, extra, lead=(C.RANK, C.RUN, C.VARIANT)))]
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
    else:
        tables["leaderboard"] = T.leaderboard(trials, metric)
        if importance is not None and not importance.empty:
            tables["importance"] = importance.reset_index()
        sections += _search_sections(study, trials, importance)

    front = T.pareto_front(trials, pareto_objectives(study))
    tables["pareto"] = front
    star = f"; star: the baseline ({study.baseline})" if study.baseline else ""
    figures["acc_vs_gmacs"] = F.accuracy_vs_compute(trials, x=C.GMACS, metric=metric, baseline=study.baseline,
                                                     by_variant=by_variant, colors=colors)
    figures["acc_vs_params"] = F.accuracy_vs_compute(trials, x=C.PARAMS, metric=metric, baseline=study.baseline,
                                                     by_variant=by_variant, colors=colors)
    sections.append(Section(
        "Pareto front", paragraphs=("Complete trials that no other complete trial beats on every objective.",),
        table=_shown(front, study, (C.PARAMS, C.GMACS, C.ACT_MB, C.VAL_ACC, C.TEST_ACC)),
        figures=(FigureRef("acc_vs_gmacs", f"{metric} against GMACs; dashed, circled: the Pareto front{star}."),
                 FigureRef("acc_vs_params", f"{metric} against parameters; dashed, circled: the front on "
                                            f"params{star}."))))

    refs = []
    for factor, bins in _edf_factors(study, trials):
        edf = T.error_edf(trials, factor, metric, bins=bins)
        stem = f"edf_{fmt.file_stem(factor)}"
        tables[stem] = edf
        figures[stem] = F.edf_figure(edf, factor, colors=colors if factor == C.VARIANT else None)
        how = f" ({factor} continuous: {EDF_BINS} quantile bins)" if bins else ""
        refs.append(FigureRef(stem, f"Error EDF by {factor}{how}: the share of trials at or below each error."))
    sections.append(Section("Error EDFs", paragraphs=(
        "Empirical distribution of error (1 - accuracy) per design choice, after Radosavovic et al., "
        "On Network Design Spaces for Visual Recognition: a curve further left is a better choice.",),
        figures=tuple(refs)))

    if curves is not None and len(curves):
        figures["learning_curves"] = F.learning_curves(curves, trials, metric=C.VAL_ACC, baseline=study.baseline,
                                                       by_variant=by_variant, colors=colors)
        sections.append(Section("Learning curves", figures=(
            FigureRef("learning_curves", "Validation accuracy per epoch; pruned trials faint, failed dotted."),)))
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

    sections.insert(0, _summary(study, trials, ablation))
    doc = Document(study.title, study.description, study.header, tuple(sections))
    return ReportParts(doc, tables, figures)

