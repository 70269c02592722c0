"""Text views of the model family for the CLI: the variant table and a per-stage description.

`gsa-nas variants` prints `variants_table()`; `gsa-nas describe NAME` prints `describe_net`,
which ends with the network's params and MACs against its conv counterpart.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from gsa_space.complexity import Complexity, breakdown, complexity
from gsa_space.config import NetConfig
from gsa_space.networks import stage_sizes
from gsa_space.variants import VARIANTS, build_config, conv_counterpart


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Plain-text table: left-aligned text, right-aligned numbers, a rule under the header."""
    cells = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    numeric = [all(_is_number(row[i]) for row in rows) and bool(rows) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        parts = [c.rjust(w) if num else c.ljust(w) for c, w, num in zip(row, widths, numeric)]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule] + [line(r) for r in cells[1:]])


def _is_number(value: Any) -> bool:
    """An int, a float, or the text of a non-negative decimal ("0.125")."""
    return str(value).replace(".", "", 1).isdigit()


def _mmacs(gmacs: float) -> str:
    return f"{gmacs * 1e3:.3f}"


MACS_UNITS: tuple[tuple[str, float], ...] = (("G", 1.0), ("M", 1e-3), ("k", 1e-6))


def format_macs(*gmacs: float, digits: int = 4) -> list[str]:
    """MACs in one unit for all values: G from 0.1 GMACs up, M below, k below 0.1 MMACs.

    The largest value gets `digits` significant digits and the rest the same decimals, so a
    ratio line reads `1.435M / 1.300M`, never `0.001435G / 0.0013G`.
    """
    top = max((abs(g) for g in gmacs), default=0.0)
    suffix, scale = next(((s, f) for s, f in MACS_UNITS if top >= 0.1 * f), MACS_UNITS[-1])
    lead = len(f"{int(round(top / scale))}")
    decimals = max(0, digits - lead)
    return [f"{g / scale:.{decimals}f}{suffix}" for g in gmacs]


def _size_text(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def variants_table() -> str:
    """Every variant with its style, input, params (M) and MACs (G) at its default input."""
    rows = []
    for name, cfg in VARIANTS.items():
        c = complexity(cfg)
        rows.append([
            name, cfg.style, _size_text(cfg.input_size), cfg.in_chans, cfg.num_classes,
            "-".join(str(s.depth) for s in cfg.stages), f"{c.params / 1e6:.3f}", f"{c.gmacs:.4f}",
        ])
    headers = ["variant", "style", "input", "chans", "classes", "depths", "params_M", "gmacs"]
    return format_table(headers, rows)


def _stage_rows(cfg: NetConfig) -> list[list[Any]]:
    parts = breakdown(cfg)
    sizes = stage_sizes(cfg)
    stem = parts["stem"]
    rows: list[list[Any]] = [["stem", cfg.style, "-", cfg.stem_width, "-", "-", "-", _size_text(sizes[0][0]),
                              stem.params, _mmacs(stem.gmacs)]]
    for i, (stage, (size_in, size_out)) in enumerate(zip(cfg.stages, sizes)):
        gsa, part = stage.op == "gsa", parts[f"stages.{i}"]
        res = _size_text(size_in) if size_in == size_out else f"{_size_text(size_in)}->{_size_text(size_out)}"
        rows.append([
            i + 1, stage.op, stage.depth, stage.width,
            stage.heads if gsa else "-", stage.dim_key if gsa else "-", stage.extent if gsa else "-",
            res, part.params, _mmacs(part.gmacs),
        ])
    head = complexity_sum(parts["pool"], parts["head"])
    rows.append(["head", "pool+linear", "-", cfg.stages[-1].width * cfg.expansion, "-", "-", "-", "1x1",
                 head.params, _mmacs(head.gmacs)])
    return rows


def complexity_sum(a: Complexity, b: Complexity) -> Complexity:
    return Complexity(a.params + b.params, a.gmacs + b.gmacs, a.act_mb + b.act_mb)


def _summary(cfg: NetConfig, mine: Complexity, base: Complexity, base_name: str) -> str:
    return (
        f"{cfg.name} vs {base_name} at {_size_text(cfg.input_size)}: "
        f"params {mine.params / 1e6:.3f}M / {base.params / 1e6:.3f}M = {mine.params / base.params:.2f}x, "
        f"MACs {' / '.join(format_macs(mine.gmacs, base.gmacs))} = {mine.gmacs / base.gmacs:.2f}x, "
        f"activations {mine.act_mb:.2f} MB / {base.act_mb:.2f} MB"
    )


def describe_net(name: str, *, overrides: Mapping[str, Any] | None = None, input_size: int | None = None) -> str:
    """Per-stage table of variant `name` (+ overrides) and a summary against its conv counterpart.

    Example: `print(describe_net("gsa_resnet26_cifar", overrides={"gsa.heads": 4}, input_size=32))`.
    """
    cfg = build_config(name, input_size=input_size, overrides=dict(overrides or {}))
    base_cfg = conv_counterpart(cfg)
    headers = ["stage", "op", "depth", "width", "heads", "dim_key", "extent", "resolution", "params", "mmacs"]
    table = format_table(headers, _stage_rows(cfg))
    mine = complexity(cfg)
    base = complexity(base_cfg)
    title = f"{cfg.name}: {cfg.style} style, input {cfg.in_chans}x{_size_text(cfg.input_size)}, " \
            f"{cfg.num_classes} classes, gsa_stages={list(cfg.gsa_stages)}"
    summary = _summary(cfg, mine, base, base_cfg.name)
    if not cfg.gsa_stages:
        summary += " (a conv net: its own baseline)"
    return "\n".join([title, "", table, "", summary])
