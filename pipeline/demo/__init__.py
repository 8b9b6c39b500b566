"""The embedded demo dataset: procedural photos of printed replicas (A) and metal parts (B).

`dataset` renders the set as plain COCO folders (`render_demo`, `demo_dir`, `write_preview`);
`render` holds materials, light and scene composition; `parts` one function per part or clutter
shape. Nothing here is data handling: ingest reads the rendered folders like any user's data.
"""
