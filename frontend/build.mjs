// Bundles src/ into dist/: hashed, code-split ES modules and CSS under dist/assets/, and
// dist/index.html pointing at them. The server serves dist/ (collab/web).
import * as esbuild from "esbuild";
import { mkdir, rm, writeFile, readFile } from "node:fs/promises";
import { gzipSync } from "node:zlib";
import path from "node:path";

const out = "dist";
await rm(out, { recursive: true, force: true });
await mkdir(`${out}/assets`, { recursive: true });

const result = await esbuild.build({
  entryPoints: { app: "src/main.ts" },
  bundle: true,
  splitting: true,
  format: "esm",
  target: "es2022",
  minify: true,
  sourcemap: "linked",
  outdir: `${out}/assets`,
  entryNames: "[name]-[hash]",
  chunkNames: "chunk-[hash]",
  assetNames: "[name]-[hash]",
  metafile: true,
  legalComments: "none",
  loader: { ".woff2": "file" },
  logLevel: "warning",
});

const outputs = result.metafile.outputs;
const entry = Object.keys(outputs).find((f) => outputs[f].entryPoint === "src/main.ts");
const css = outputs[entry].cssBundle;
const name = (f) => "/assets/" + path.basename(f);
// Modules the entry imports statically are preloaded so the first screen needs one round trip.
const preload = outputs[entry].imports.filter((i) => i.kind === "import-statement").map((i) => i.path);

const html = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>collab</title>
<link rel="icon" href="data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 32 32'%3E%3Crect width='32' height='32' rx='8' fill='%235b5bd6'/%3E%3Cpath d='M9 16a7 7 0 0 1 12-5M23 16a7 7 0 0 1-12 5' stroke='white' stroke-width='3' fill='none' stroke-linecap='round'/%3E%3C/svg%3E">
${css ? `<link rel="stylesheet" href="${name(css)}">` : ""}
${preload.map((p) => `<link rel="modulepreload" href="${name(p)}">`).join("\n")}
<script type="module" src="${name(entry)}"></script>
</head>
<body>
<div id="app"></div>
<noscript>collab needs JavaScript.</noscript>
</body>
</html>
`;
await writeFile(`${out}/index.html`, html);

// The initial JavaScript: the entry and what it imports statically (lazy chunks excluded).
let initial = 0;
const seen = new Set();
const walk = async (f) => {
  if (seen.has(f)) return;
  seen.add(f);
  initial += gzipSync(await readFile(f)).length;
  for (const i of outputs[f].imports) if (i.kind === "import-statement") await walk(i.path);
};
await walk(entry);
// Precompressed copies, served when the browser accepts gzip (collab/web/assets.py).
for (const f of Object.keys(outputs)) {
  if (/\.(js|css)$/.test(f)) await writeFile(`${f}.gz`, gzipSync(await readFile(f), { level: 9 }));
}
const report = { entry: name(entry), initial_js_gzip_bytes: initial };
await writeFile(`${out}/build.json`, JSON.stringify(report, null, 2));
console.log(`built ${out}/ — initial JavaScript ${(initial / 1024).toFixed(1)} KiB gzipped`);
