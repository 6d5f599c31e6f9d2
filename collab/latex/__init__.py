"""LaTeX builds: latexmk in the project's sandbox, the parsed log in the `latex_builds`
table, the PDF over HTTP and SyncTeX searches (docs/architecture.md, docs/protocol.md)."""
