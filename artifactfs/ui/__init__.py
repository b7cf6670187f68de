"""The web view (`artifactfs ui`): read-only pages and a JSON API over a store. catalog.py gathers what
each page shows, app.py serves it (HTML through templates/, JSON under /api), preview.py and
download.py read a file's verified bytes, graph.py draws the lineage graph."""
