"""Parameter counts per component: how big the model is, and how much of it trains."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class ComponentSize:
    name: str
    trainable: int
    total: int


def _count(module: nn.Module) -> tuple[int, int]:
    params = list(module.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def parameter_counts(model: nn.Module) -> list[ComponentSize]:
    """Rows for each encoder (backbone and projection), the fusion layer, each head, and the total."""
    rows = []
    for name, encoder in model.encoders.items():
        rows.append(ComponentSize(f"{name} encoder", *_count(encoder)))
        rows.append(ComponentSize(f"  {name} backbone", *_count(encoder.backbone)))
        rows.append(ComponentSize(f"  {name} projection", *_count(encoder.projection)))
    rows.append(ComponentSize("fusion", *_count(model.fusion)))
    for task, head in model.heads.items():
        rows.append(ComponentSize(f"{task} head", *_count(head)))
    rows.append(ComponentSize("total", *_count(model)))
    return rows


def format_parameter_counts(rows: list[ComponentSize]) -> str:
    width = max(len(r.name) for r in rows)
    lines = [f"{'component':<{width}}  {'trainable':>12}  {'total':>12}  {'MB (fp32)':>9}"]
    lines.append("-" * len(lines[0]))
    for row in rows:
        if row.name == "total":
            lines.append("-" * len(lines[0]))
        lines.append(f"{row.name:<{width}}  {row.trainable:>12,}  {row.total:>12,}  {row.total * 4 / 2**20:>9.1f}")
    return "\n".join(lines)
