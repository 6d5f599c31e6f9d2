"""Project files for the browser: the `files` listings table kept live by a watcher,
file operations on /ws, and upload, download and raw serving over HTTP."""
