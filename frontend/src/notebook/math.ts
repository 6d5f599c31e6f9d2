// Math with KaTeX, loaded (script and stylesheet) only when something shows math: `$…$` and
// `$$…$$` in markdown, and text/latex outputs.

import { type Attachments, renderMarkdown } from "../editors/markdown";
import { stylesheet } from "../preload";

type Katex = typeof import("katex").default;
let loading: Promise<Katex> | null = null;

function katex(): Promise<Katex> {
  stylesheet("katex");
  loading ??= import("katex").then((m) => m.default);
  return loading;
}

/** Typesets `tex` into `el`; a formula KaTeX cannot read is shown as its source. */
export async function typeset(el: HTMLElement, tex: string, display: boolean): Promise<void> {
  const k = await katex();
  try {
    // maxSize and maxExpand: a formula cannot draw far outside its box or expand forever.
    k.render(tex, el, { displayMode: display, throwOnError: false, output: "htmlAndMathml", maxSize: 10, maxExpand: 500 });
  } catch {
    el.textContent = tex;
  }
}

/** A text/latex output: `$$…$$`, `$…$`, `\[…\]` or bare LaTeX (display). */
export function latexOutput(source: string): HTMLElement {
  const el = document.createElement("div");
  el.className = "out-latex";
  const tex = source.trim().replace(/^\$\$([\s\S]*)\$\$$|^\$([\s\S]*)\$$|^\\\[([\s\S]*)\\\]$/, (_m, a, b, c) => a ?? b ?? c);
  el.textContent = tex;
  void typeset(el, tex, true);
  return el;
}

// Code first, so that `$` inside code is left alone; then display and inline math.
const MATH = /(```[\s\S]*?```|`[^`\n]*`)|\$\$([\s\S]+?)\$\$|\\\[([\s\S]+?)\\\]|\$([^$\n]+?)\$/g;
const PLACEHOLDER = /%%MATH(\d+)%%/g;

/** Markdown (marked + DOMPurify) with its math typeset by KaTeX. */
export function markdownWithMath(source: string, projectId: string, path: string, attachments?: Attachments): DocumentFragment {
  const formulas: { tex: string; display: boolean }[] = [];
  const text = source.replace(MATH, (m, code, display, bracket, inline) => {
    if (code !== undefined) return m;
    formulas.push({ tex: display ?? bracket ?? inline, display: inline === undefined });
    return `%%MATH${formulas.length - 1}%%`;
  });
  const frag = renderMarkdown(text, projectId, path, attachments);
  if (!formulas.length) return frag;
  const walker = document.createTreeWalker(frag, NodeFilter.SHOW_TEXT);
  const nodes: Text[] = [];
  while (walker.nextNode()) if ((walker.currentNode as Text).data.includes("%%MATH")) nodes.push(walker.currentNode as Text);
  for (const node of nodes) {
    const parts = document.createDocumentFragment();
    let last = 0;
    for (const m of node.data.matchAll(PLACEHOLDER)) {
      parts.append(node.data.slice(last, m.index));
      last = m.index + m[0].length;
      const f = formulas[Number(m[1])];
      const el = document.createElement(f?.display ? "div" : "span");
      el.className = f?.display ? "math math-display" : "math";
      el.textContent = f?.tex ?? "";
      if (f) void typeset(el, f.tex, f.display);
      parts.append(el);
    }
    parts.append(node.data.slice(last));
    node.replaceWith(parts);
  }
  return frag;
}
