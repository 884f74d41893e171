"""Metrics layer: classification scores, run reports (JSON + markdown) and plots (PNG).

Imports nothing else of tensorfab; matplotlib is imported only when a plot is drawn.
"""

from tensorfab.metrics.classification import (
    classification_scores,
    confusion_matrix,
    scores_from_confusion,
)
from tensorfab.metrics.plots import plot_confusion_matrix, plot_curves, plot_stacked_bars
from tensorfab.metrics.report import (
    format_metric,
    format_percent,
    markdown_table,
    render_markdown,
    write_report,
)
from tensorfab.metrics.sequence import (
    entity_errors,
    entity_scores,
    sequence_report_markdown,
    token_scores,
)

__all__ = [
    "classification_scores",
    "confusion_matrix",
    "entity_errors",
    "entity_scores",
    "format_metric",
    "format_percent",
    "markdown_table",
    "plot_confusion_matrix",
    "plot_curves",
    "plot_stacked_bars",
    "render_markdown",
    "scores_from_confusion",
    "sequence_report_markdown",
    "token_scores",
    "write_report",
]
