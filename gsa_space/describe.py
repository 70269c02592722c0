"""Text views of the model family for the CLI: the variant table and a per-stage description.

`gsa-nas variants` prints `variants_table()`; `gsa-nas describe NAME` prints `describe_net`,
which ends with the network's params and MACs against its conv counterpart.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch

from gsa_space.complexity import Complexity, complexity, macs_by_module
from gsa_space.config import NetConfig
from gsa_space.networks import build_net, stage_sizes
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


def _mmacs(macs: float) -> str:
    return f"{macs / 1e6:.3f}"


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
    torch.manual_seed(0)
    net = build_net(cfg)
    macs = macs_by_module(net, cfg.input_size, cfg.in_chans)
    rows: list[list[Any]] = []
    stem_params = sum(p.numel() for p in net.stem.parameters())
    out = stage_sizes(cfg)[0][0]
    rows.append(["stem", cfg.style, "-", cfg.stem_width, "-", "-", "-", _size_text(out),
                 stem_params, _mmacs(macs.get("stem", 0))])
    for i, (stage, (size_in, size_out)) in enumerate(zip(cfg.stages, stage_sizes(cfg))):
        gsa = stage.op == "gsa"
        params = sum(p.numel() for p in net.stages[i].parameters())
        res = _size_text(size_in) if size_in == size_out else f"{_size_text(size_in)}->{_size_text(size_out)}"
        rows.append([
            i + 1, stage.op, stage.depth, stage.width,
            stage.heads if gsa else "-", stage.dim_key if gsa else "-", stage.extent if gsa else "-",
            res, params, _mmacs(macs.get(f"stages.{i}", 0)),
        ])
    head_params = sum(p.numel() for p in net.head.parameters())
    rows.append(["head", "linear", "-", net.num_features, "-", "-", "-", "1x1", head_params,
                 _mmacs(macs.get("head", 0) + macs.get("pool", 0))])
    return rows


def _summary(cfg: NetConfig, mine: Complexity, base: Complexity, base_name: str) -> str:
    return (
        f"{cfg.name} vs {base_name} at {_size_text(cfg.input_size)}: "
        f"params {mine.params / 1e6:.3f}M / {base.params / 1e6:.3f}M = {mine.params / base.params:.2f}x, "
        f"MACs {mine.gmacs:.4f}G / {base.gmacs:.4f}G = {mine.gmacs / base.gmacs:.2f}x, "
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
    return "\n".join([title, "", table, "", _summary(cfg, mine, base, base_cfg.name)])
