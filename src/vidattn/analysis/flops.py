"""The papers' compute tables: MACs per view of registered models (`count_model`) beside the W3 paper's
Tables 1, 6 and 8 (`paper_table`, `format_table`; docs/models.md explains every difference).

Counting itself (`count_macs`, `ComputeCount`) lives in `vidattn.models.compute`, below the engine, which
reports MACs per view after evaluation; it is re-exported here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from vidattn.models.compute import ComputeCount, count_macs
from vidattn.models.registry import create_model

__all__ = ["PAPER_ROWS", "ComputeCount", "PaperRow", "count_macs", "count_model", "format_table", "paper_table"]


def count_model(name: str, frames: int = 8, size: int = 224, num_classes: int = 174,
                **options: Any) -> ComputeCount:
    """MACs per view of registered model `name` on a `frames` x `size` x `size` clip (built on meta)."""
    with torch.device("meta"):
        model = create_model(name, num_classes=num_classes, num_segments=frames, **options)
    return count_macs(model, (1, 3, frames, size, size))


@dataclass(frozen=True)
class PaperRow:
    """One row of a published compute table: what we build, and the paper's GFLOPs (None if unpublished)."""

    table: str
    label: str
    model: str
    frames: int
    paper_gflops: float | None
    size: int = 224
    num_classes: int = 174
    options: Mapping[str, Any] = field(default_factory=dict)
    note: str = ""


W3_FULL_TEMPORAL = {"attention_options": {"channel_temporal_groups": "full"}}

PAPER_ROWS: tuple[PaperRow, ...] = (
    PaperRow("W3 Tab.1", "TSN R50", "tsn_r50", 8, 33.0),
    PaperRow("W3 Tab.1", "TSM R50", "tsm_r50", 8, 33.0),
    PaperRow("W3 Tab.1", "TSM R50", "tsm_r50", 16, 65.0),
    PaperRow("W3 Tab.1", "TSM+W3 R50", "tsm_w3_r50", 8, 33.5, note="depthwise temporal convs (default)"),
    PaperRow("W3 Tab.1", "TSM+W3 R50", "tsm_w3_r50", 8, 33.5, options=W3_FULL_TEMPORAL,
             note="full C->C temporal convs"),
    PaperRow("W3 Tab.1", "TSM+W3 R50", "tsm_w3_r50", 16, 67.1, note="depthwise temporal convs (default)"),
    PaperRow("W3 Tab.1", "TSM+W3 R50", "tsm_w3_r50", 16, 67.1, options=W3_FULL_TEMPORAL,
             note="full C->C temporal convs"),
    PaperRow("W3 Tab.1", "I3D 3D R50 (per clip)", "i3d_r50", 32, 153.0),
    PaperRow("W3 Tab.1", "I3D+NL 3D R50 (per clip)", "i3d_nl_r50", 32, 168.0),
    PaperRow("W3 Tab.6", "TSM", "tsm_r50", 16, 65.0),
    PaperRow("W3 Tab.6", "TSM+CBAM", "tsm_cbam_r50", 16, 66.5),
    PaperRow("W3 Tab.6", "TSM+NL", "tsm_nl_r50", 16, 115.0, note="ours counts the two attention matmuls"),
    PaperRow("W3 Tab.6", "TSM+W3", "tsm_w3_r50", 16, 67.1),
    PaperRow("W3 Tab.8", "I3D 3D R18", "i3d_r18", 32, None),
    PaperRow("W3 Tab.8", "I3D+W3 3D R18", "i3d_w3_r18", 32, None),
    PaperRow("W3 Tab.8", "I3D 3D R18", "i3d_r18", 64, None),
    PaperRow("W3 Tab.8", "I3D+W3 3D R18", "i3d_w3_r18", 64, None),
    PaperRow("W3 Tab.8", "TAM R50", "tam_r50", 8, None),
    PaperRow("W3 Tab.8", "TAM+W3 R50", "tam_w3_r50", 8, None),
    PaperRow("W3 Tab.8", "TSM R50", "tsm_r50", 8, None),
    PaperRow("W3 Tab.8", "TSM+W3 R50", "tsm_w3_r50", 8, None),
    PaperRow("UCF-101", "3D-ConvNet", "c3d", 16, None, size=112, num_classes=101),
    PaperRow("UCF-101", "3D-ConvNet + Attention", "c3d_attention", 16, None, size=112, num_classes=101),
)


def paper_table(rows: tuple[PaperRow, ...] = PAPER_ROWS) -> list[dict[str, Any]]:
    """Our MACs and parameters for every published row, beside the paper's GFLOPs."""
    results = []
    for row in rows:
        count = count_model(row.model, row.frames, row.size, row.num_classes, **row.options)
        diff = None if row.paper_gflops is None else 100 * (count.gmacs / row.paper_gflops - 1)
        results.append({
            "table": row.table, "label": row.label, "model": row.model, "frames": row.frames,
            "size": row.size, "gmacs": count.gmacs, "params_m": count.params / 1e6,
            "paper_gflops": row.paper_gflops, "diff_percent": diff, "note": row.note,
            "options": dict(row.options),
        })
    return results


def format_table(results: list[dict[str, Any]]) -> str:
    """Plain-text table of `paper_table()` results."""
    head = f"{'table':<9} {'row':<25} {'model':<13} {'T':>3} {'size':>4} {'GMACs':>8} {'paper':>7} " \
           f"{'diff':>7} {'params(M)':>9}  note"
    lines = [head, "-" * len(head)]
    for r in results:
        paper = "-" if r["paper_gflops"] is None else f"{r['paper_gflops']:.1f}"
        diff = "" if r["diff_percent"] is None else f"{r['diff_percent']:+.1f}%"
        lines.append(f"{r['table']:<9} {r['label']:<25} {r['model']:<13} {r['frames']:>3} {r['size']:>4} "
                     f"{r['gmacs']:>8.2f} {paper:>7} {diff:>7} {r['params_m']:>9.2f}  {r['note']}")
    lines.append("GMACs: multiply-accumulates per view (1 clip x 1 crop), the papers' 'GFLOPs' convention.")
    return "\n".join(lines)
