// Preloads every chunk a lazy module needs in parallel (the build lists them in
// index.html), instead of one import level per round trip.

let chunks: Record<string, string[]> | null = null;
const done = new Set<string>();

function lazyChunks(): Record<string, string[]> {
  if (chunks === null) {
    try {
      chunks = JSON.parse(document.getElementById("lazy-chunks")?.textContent ?? "{}") as Record<string, string[]>;
    } catch {
      chunks = {};
    }
  }
  return chunks;
}

/** Adds the lazily loaded stylesheet whose entry's path contains `match` (once). */
export function stylesheet(match: string): void {
  for (const [entry, files] of Object.entries(lazyChunks())) {
    if (!entry.startsWith("css:") || !entry.includes(match)) continue;
    for (const href of files) {
      if (done.has(href)) continue;
      done.add(href);
      const link = document.createElement("link");
      link.rel = "stylesheet";
      link.href = href;
      document.head.append(link);
    }
  }
}

export function preload(match: string): void {
  for (const [entry, files] of Object.entries(lazyChunks())) {
    if (entry.startsWith("css:")) continue;
    if (!entry.includes(match)) continue;
    for (const href of files) {
      if (done.has(href)) continue;
      done.add(href);
      const link = document.createElement("link");
      link.rel = "modulepreload";
      link.href = href;
      document.head.append(link);
    }
  }
}
