// Preloads every chunk a lazy module needs in parallel (the build lists them in
// index.html), instead of one import level per round trip.

let chunks: Record<string, string[]> | null = null;
const done = new Set<string>();

export function preload(match: string): void {
  if (chunks === null) {
    try {
      chunks = JSON.parse(document.getElementById("lazy-chunks")?.textContent ?? "{}") as Record<string, string[]>;
    } catch {
      chunks = {};
    }
  }
  for (const [entry, files] of Object.entries(chunks)) {
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
