// A code cell's outputs, rendered from their nbformat JSON (as the server writes them into
// the document, docs/protocol.md "What the executor writes"). Everything from a kernel is
// untrusted: HTML and SVG go through DOMPurify (no script ever runs in the app's origin),
// text is set as text.

import { h } from "../ui/dom";
import { sanitize } from "../ui/sanitize";
import { ansiToFragment, stripAnsi } from "./ansi";
import { latexOutput, markdownWithMath } from "./math";

export interface Output {
  output_type: string;
  name?: string;
  text?: string | string[];
  data?: Record<string, unknown>;
  metadata?: Record<string, unknown>;
  ename?: string;
  evalue?: string;
  traceback?: string[];
}

export interface OutputContext {
  projectId: string;
  path: string;
  /** Outputs the reader asked to see in full (by index); the rest collapse when long. */
  expanded: Set<number>;
  onExpand: (index: number) => void;
}

/** Outputs longer than this many lines show their last lines and a "show all" button. */
export const COLLAPSE_LINES = 200;

const join = (v: unknown): string => (Array.isArray(v) ? v.join("") : typeof v === "string" ? v : v == null ? "" : JSON.stringify(v));

function textBlock(text: string, cls: string, index: number, ctx: OutputContext): HTMLElement {
  const lines = text.split("\n");
  if (text.endsWith("\n")) lines.pop();
  const pre = h("pre", { class: cls });
  if (lines.length > COLLAPSE_LINES && !ctx.expanded.has(index)) {
    const hidden = lines.length - COLLAPSE_LINES;
    pre.append(ansiToFragment(lines.slice(-COLLAPSE_LINES).join("\n")));
    return h("div", { class: "out-collapsed" },
      h("button", { class: "btn btn-ghost btn-sm out-show-all", onclick: () => ctx.onExpand(index) },
        `Show all ${lines.length.toLocaleString()} lines (${hidden.toLocaleString()} hidden)`),
      pre);
  }
  pre.append(ansiToFragment(text));
  return pre;
}

function jsonTree(value: unknown, key?: string, depth = 0): HTMLElement {
  const label = key === undefined ? null : h("span", { class: "json-key" }, `${key}: `);
  if (value !== null && typeof value === "object") {
    const entries = Array.isArray(value) ? value.map((v, i) => [String(i), v] as const) : Object.entries(value);
    const summary = Array.isArray(value) ? `Array(${entries.length})` : `{${entries.length === 0 ? "" : "…"}}`;
    const details = h("details", { class: "json-node", open: depth < 2 },
      h("summary", null, label, h("span", { class: "json-summary" }, summary)));
    for (const [k, v] of entries) details.append(jsonTree(v, k, depth + 1));
    return details;
  }
  const kind = value === null ? "null" : typeof value;
  return h("div", { class: "json-leaf" }, label, h("span", { class: `json-${kind}` }, JSON.stringify(value)));
}

function image(mime: string, data: unknown, metadata: Record<string, unknown> | undefined): HTMLElement {
  const meta = (metadata?.[mime] ?? {}) as { width?: number; height?: number };
  return h("img", { class: "out-image", src: `data:${mime};base64,${join(data).replace(/\s/g, "")}`, alt: "output image", width: meta.width, height: meta.height });
}

function richData(data: Record<string, unknown>, metadata: Record<string, unknown> | undefined, index: number, ctx: OutputContext): HTMLElement {
  if ("text/html" in data) return h("div", { class: "out-html" }, sanitize(join(data["text/html"])));
  if ("text/markdown" in data) return h("div", { class: "out-markdown markdown" }, markdownWithMath(join(data["text/markdown"]), ctx.projectId, ctx.path));
  if ("text/latex" in data) return latexOutput(join(data["text/latex"]));
  if ("image/svg+xml" in data) {
    return h("div", { class: "out-svg" }, sanitize(join(data["image/svg+xml"]), { svg: true }));
  }
  if ("image/png" in data) return image("image/png", data["image/png"], metadata);
  if ("image/jpeg" in data) return image("image/jpeg", data["image/jpeg"], metadata);
  if ("application/json" in data) return h("div", { class: "out-json" }, jsonTree(data["application/json"]));
  if ("text/plain" in data) return textBlock(join(data["text/plain"]), "out-text", index, ctx);
  return h("div", { class: "out-unknown muted small" }, `No renderer for ${Object.keys(data).join(", ")}`);
}

/** One output as DOM. The document is anyone's to write (a student's .ipynb, their
 * kernel's messages): an output of an unexpected shape shows a notice instead of stopping
 * the rest of the cell, and the notebook, from rendering. */
export function renderOutput(out: Output, index: number, ctx: OutputContext): HTMLElement {
  try {
    return renderOne(out, index, ctx);
  } catch {
    return h("div", { class: "out-unknown muted small" }, "This output could not be shown.");
  }
}

function renderOne(out: Output, index: number, ctx: OutputContext): HTMLElement {
  const type = out.output_type;
  if (type === "stream") return textBlock(join(out.text), `out-stream ${out.name === "stderr" ? "out-stderr" : ""}`, index, ctx);
  if (type === "error") {
    const traceback = Array.isArray(out.traceback) ? out.traceback.map(String) : [];
    const tb = traceback.length ? traceback.join("\n") : `${String(out.ename ?? "")}: ${String(out.evalue ?? "")}`;
    const el = textBlock(tb, "out-error", index, ctx);
    el.setAttribute("data-ename", stripAnsi(String(out.ename ?? "")));
    return el;
  }
  if (out.metadata?.collab_truncated) {
    return h("div", { class: "out-notice", role: "note" }, join(out.data?.["text/plain"]) || "[output truncated]");
  }
  if ((type === "display_data" || type === "execute_result") && out.data) return richData(out.data, out.metadata, index, ctx);
  return h("div", { class: "out-unknown muted small" }, `Unknown output ${type}`);
}
