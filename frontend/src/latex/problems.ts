// A build's parsed log (the `errors`, `warnings` and `badboxes` of its latex_builds row):
// the list beside the PDF, and the editor's diagnostics for the file it shows.

import type { Diagnostic } from "@codemirror/lint";
import type { Text } from "@codemirror/state";
import type { Row } from "../api/ws";
import { h, icon } from "../ui/dom";

export type Severity = "error" | "warning" | "badbox";

export interface Problem {
  severity: Severity;
  kind: string;
  message: string;
  /** A project path, an absolute path (the TeX distribution's files), or null. */
  file: string | null;
  line: number | null;
  source: string;
}

const FIELDS: [string, Severity][] = [["errors", "error"], ["warnings", "warning"], ["badboxes", "badbox"]];

export function problemsOf(row: Row | undefined): Problem[] {
  if (!row) return [];
  const out: Problem[] = [];
  for (const [field, severity] of FIELDS) {
    const list = Array.isArray(row[field]) ? (row[field] as Row[]) : [];
    for (const p of list) {
      out.push({
        severity,
        kind: String(p.kind ?? ""),
        message: String(p.message ?? ""),
        file: typeof p.file === "string" ? p.file : null,
        line: typeof p.line === "number" ? p.line : null,
        source: String(p.source ?? "tex"),
      });
    }
  }
  return out;
}

export function count(problems: Problem[], severity: Severity): number {
  return problems.filter((p) => p.severity === severity).length;
}

/** A file the app can open: a project path, not one of the distribution's files. */
/** A project path to open: not the distribution's files (absolute) and nothing that
 * climbs out of the project (a log can name `../../x`). */
export function inProject(file: string | null): file is string {
  return file !== null && file !== "" && !file.startsWith("/") && !file.split("/").some((part) => part === ".." || part === ".");
}

const LABELS: Record<Severity, string> = { error: "Error", warning: "Warning", badbox: "Bad box" };

export function problemList(problems: Problem[], pick: (p: Problem) => void): HTMLElement {
  return h("ul", { class: "problems", "aria-label": "Problems in the build log" },
    problems.map((p) => {
      const where = p.file ? `${p.file.slice(p.file.lastIndexOf("/") + 1)}${p.line !== null ? `:${p.line}` : ""}` : "";
      const jumpable = inProject(p.file) && p.line !== null;
      return h("li", null,
        h("button", {
          class: `problem problem-${p.severity}`,
          disabled: !jumpable,
          title: jumpable ? `Go to ${p.file}, line ${p.line}` : p.file ?? "",
          "data-line": p.line ?? "",
          "data-severity": p.severity,
          onclick: () => pick(p),
        },
          h("span", { class: "problem-icon", "aria-label": LABELS[p.severity] }, icon(p.severity === "error" ? "alert" : p.severity === "warning" ? "warning" : "box", 14)),
          h("span", { class: "problem-message" }, p.message),
          where ? h("span", { class: "problem-where" }, where) : null));
    }));
}

/** The problems of `path` as diagnostics on whole lines of `doc`. */
export function diagnosticsFor(doc: Text, problems: Problem[], path: string): Diagnostic[] {
  const out: Diagnostic[] = [];
  for (const p of problems) {
    if (p.file !== path || p.line === null || p.line < 1) continue;
    const line = doc.line(Math.min(p.line, doc.lines));
    out.push({
      from: line.from,
      to: line.to,
      severity: p.severity === "error" ? "error" : p.severity === "warning" ? "warning" : "info",
      source: p.source === "bibtex" ? "BibTeX" : p.source === "biber" ? "Biber" : "LaTeX",
      message: p.message,
    });
  }
  return out;
}
