"""`metalize ingest`: validate, hash and split the data sources into a dataset version."""

from __future__ import annotations


import typer
from rich.markup import escape
from rich.table import Table

from pipeline.cli import app
from pipeline.cli.common import CONFIG_ARG, OVERRIDES_ARG, console, fail, load


@app.command()
def ingest(
    config: str | None = CONFIG_ARG,
    overrides: list[str] = OVERRIDES_ARG,
    strict: bool = typer.Option(
        False, "--strict", help="fail on the first bad input instead of quarantining it"
    ),
) -> None:
    """Ingest data.a / data.b (or the demo data) into <output_root>/data/datasets/<name>-<id>/.

    Prints the version folder on stdout; counts and the quarantine summary (rows grouped by
    action and reason, a few example files each) go to stderr. Exit status is non-zero for fatal
    errors (bad config, category mismatch, a domain left without labelled images) or with --strict.
    """
    cfg = load(config, overrides)
    from pipeline.data.formats import FormatError
    from pipeline.data.ingest import NOTES, QUARANTINE, IngestError
    from pipeline.data.quarantine import summary_lines

    try:
        from pipeline.data.ingest import ingest as run_ingest

        result = run_ingest(cfg, strict=strict or None, progress=True)
    except (IngestError, FormatError, ValueError, RuntimeError) as e:
        fail(str(e))
        return
    summary = result.version.manifest["summary"]
    cats = summary["categories"]
    table = Table(title=f"{result.version.id}" + (" (cached)" if result.cached else ""))
    for col in ["split", "images", "boxes", *cats]:
        table.add_column(col, justify="left" if col == "split" else "right")
    for split, c in result.counts.items():
        per_class = summary["instances"].get(split, {})
        table.add_row(split, str(c["images"]), str(c["boxes"]), *(str(per_class.get(n, 0)) for n in cats))
    console.print(table)
    q = len(result.quarantine)
    colour = "yellow" if q else "green"
    console.print(f"[{colour}]quarantine: {q} rows[/]" + (" by action and reason:" if q else ""))
    for line in summary_lines(result.quarantine):
        console.print("  " + escape(line))  # file names may hold [brackets], not rich markup
    if q:
        console.print(f"full list: {result.version.root / QUARANTINE}")
    if result.notes:  # kept as shown (normalised encoding, identical copies): no problem, but said
        console.print(f"notes: {len(result.notes)} rows about images kept as they are:")
        for line in summary_lines(result.notes):
            console.print("  " + escape(line))
        console.print(f"full list: {result.version.root / NOTES}")
    typer.echo(str(result.version.root))
