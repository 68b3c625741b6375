"""Export snapshots (API.md, "Export formats"): which pairs and labels go in, their rows per format, the file.

`filters` says what a snapshot keeps, `labels` decides each pair's label at the snapshot's cutoff, `rows`
streams the kept pairs (or annotations) as plain rows, `formats` turns a row into each format's dicts
(pure functions), `writer` writes them into a deterministic .zip or .jsonl, `card` writes its README.md.
`annotate.services.exports` holds the snapshot's life: create, send to a worker, run, download.
"""
