#!/bin/sh
# Rebuilds the real logs the parser tests read, as collab/latex/runner.py builds.
# biber and biberwarn need biber and biblatex (apt-get install --no-install-recommends
# biber texlive-bibtex-extra), which the server itself does not install.
set -e
cd "$(dirname "$0")"
for doc in errors warnings biblio biber biberwarn; do
    openin_any=p openout_any=p shell_escape=f max_print_line=10000 error_line=254 \
        half_error_line=238 latexmk -pdf -synctex=1 -interaction=nonstopmode \
        -file-line-error -no-shell-escape -outdir=out "$doc.tex" >/dev/null 2>&1 || true
    cp "out/$doc.log" "$doc.log"
    [ -f "out/$doc.blg" ] && cp "out/$doc.blg" "$doc.blg"
done
rm -rf out
