"""The comparison report: plots, Markdown, self-contained HTML and metrics.json."""
