// The LaTeX workspace of a .tex file: the shared source (the text editor, with LaTeX
// highlighting, build keys and the log's problems as diagnostics) beside the PDF of its
// main file's last build. Builds are the server's (latex.build); this screen follows the
// main file's row in the latex_builds feed, and asks for a build once edits settle when
// auto-build is on (the server has no auto-build of its own).

import { lintGutter, setDiagnostics } from "@codemirror/lint";
import { Prec } from "@codemirror/state";
import { EditorView, keymap } from "@codemirror/view";
import { ApiError, liveRows, type Row } from "../api/ws";
import { fileUrl, navigate } from "../router";
import { session } from "../session";
import { h, icon, relativeTime, replace, toast } from "../ui/dom";
import type { DocView } from "../editors/open";
import { openText } from "../editors/text";
import type { PdfBox, PdfPoint, PdfPreview } from "./pdf";
import { count, diagnosticsFor, inProject, type Problem, problemList, problemsOf } from "./problems";

// Overleaf's timing: build 2.5 s after typing stops, and at most 5 s after the first edit.
const SETTLE_MS = 2500;
const AT_MOST_MS = 5000;
const AUTO_KEY = "collab:latex-auto";
const BUSY = new Set(["queued", "running"]);
const isMac = /Mac|iP(hone|ad)/.test(navigator.platform);
const MOD = isMac ? "⌘" : "Ctrl";

// A line to show once a file opens: an inverse search or a problem in another file.
let pendingJump: { projectId: string; path: string; line: number } | null = null;

function mainKey(projectId: string, path: string): string {
  return `collab:latex-main:${projectId}:${path}`;
}

export function pdfUrl(projectId: string, main: string): string {
  return `/api/projects/${projectId}/latex/pdf?path=${encodeURIComponent(main)}`;
}

function seconds(ms: unknown): string {
  return typeof ms === "number" ? `${(ms / 1000).toFixed(ms < 10000 ? 1 : 0)} s` : "";
}

export function openLatex(host: HTMLElement, projectId: string, path: string): DocView {
  const { client, account } = session();
  // The file the server builds for this one (itself, or the main file that \inputs it),
  // as the last build answer said.
  let main = localStorage.getItem(mainKey(projectId, path)) ?? path;
  let rows = new Map<string, Row>();
  let names = new Map<string, string>();
  let editor: EditorView | null = null;
  let auto = localStorage.getItem(AUTO_KEY) !== "off";
  let showProblems = false;
  let lastSeen = ""; // the build and status last acted on
  let shownDiagnostics = ""; // the build whose problems the editor marks
  let destroyed = false;

  // pdf.js is large: the editor opens while it loads (preloaded with this module).
  let preview: PdfPreview | null = null;
  const stateEl = h("div", { class: "latex-state", role: "status", "aria-live": "polite", "data-testid": "build-status" });
  const countsEl = h("div", { class: "latex-counts" });
  const zoomLabel = h("span", { class: "zoom-label", "aria-live": "polite" }, "");
  const fitBtn = h("button", { class: "btn btn-icon btn-sm", "aria-label": "Fit to width", title: "Fit to width", "aria-pressed": "true", onclick: () => preview?.setZoom("fit") }, icon("fit", 14));
  const zoom = h("div", { class: "btn-group latex-zoom", role: "group", "aria-label": "Zoom" },
    h("button", { class: "btn btn-icon btn-sm", "aria-label": "Zoom out", title: "Zoom out", onclick: () => preview?.setZoom("out") }, icon("minus", 14)),
    zoomLabel,
    h("button", { class: "btn btn-icon btn-sm", "aria-label": "Zoom in", title: "Zoom in", onclick: () => preview?.setZoom("in") }, icon("plus", 14)),
    fitBtn);
  const problemsEl = h("div", { class: "latex-problems", role: "region", "aria-label": "Build log", "data-testid": "problems", hidden: true });
  const emptyEl = h("div", { class: "latex-empty" });
  const pdfHost = h("div", { class: "pdf-host" }, emptyEl);
  const side = h("section", { class: "latex-side", "aria-label": "PDF preview" },
    h("div", { class: "latex-bar" }, stateEl, countsEl, zoom),
    problemsEl,
    pdfHost);

  const buildBtn = h("button", {
    class: "btn btn-primary btn-sm", "data-testid": "build",
    title: `Build the PDF (${MOD}-Enter or ${MOD}-S)`, "aria-keyshortcuts": "Control+Enter Control+S",
    onclick: () => void build(),
  }, icon("play", 13), "Build");
  const stopBtn = h("button", { class: "btn btn-sm", "data-testid": "stop", hidden: true, onclick: () => void stop() }, icon("stop", 13), "Stop");
  const autoBox = h("input", { type: "checkbox", class: "switch", checked: auto, "data-testid": "auto-build", onchange: () => {
    auto = autoBox.checked;
    localStorage.setItem(AUTO_KEY, auto ? "on" : "off");
    if (!auto) clearTimeout(autoTimer);
  } });
  const autoLabel = h("label", { class: "check latex-auto", title: "Build 2.5 s after you stop typing" }, autoBox, "Auto-build");
  const syncBtn = h("button", {
    class: "btn btn-ghost btn-sm", "data-testid": "forward-search",
    title: `Show the cursor's line in the PDF (${MOD}-Alt-J)`, "aria-keyshortcuts": "Control+Alt+J",
    onclick: () => void forward(),
  }, icon("locate", 14), "Show in PDF");

  const text = openText(host, projectId, path, {
    kind: "latex-doc",
    aside: side,
    actions: [h("div", { class: "btn-group latex-actions" }, autoLabel, syncBtn, stopBtn, buildBtn), h("span", { class: "toolbar-sep" })],
    extensions: [
      lintGutter(),
      Prec.highest(keymap.of([
        { key: "Mod-Enter", run: () => { void build(); return true; } },
        { key: "Mod-s", run: () => { void build(); return true; }, preventDefault: true },
        { key: "Mod-Alt-j", run: () => { void forward(); return true; } },
      ])),
    ],
  });
  // The same keys where the editor does not have focus (the PDF, the log).
  const onKey = (e: KeyboardEvent) => {
    if (!(e.ctrlKey || e.metaKey) || e.defaultPrevented) return;
    if (e.key === "Enter" || e.key.toLowerCase() === "s") {
      e.preventDefault();
      void build();
    }
  };
  host.addEventListener("keydown", onKey);

  const gotoLine = (line: number) => {
    if (!editor) return;
    const doc = editor.state.doc;
    const at = doc.line(Math.max(1, Math.min(line, doc.lines))).from;
    editor.dispatch({ selection: { anchor: at }, effects: EditorView.scrollIntoView(at, { y: "center" }) });
    editor.focus();
  };
  const open = (file: string, line: number) => {
    if (file === path) gotoLine(line);
    else {
      pendingJump = { projectId, path: file, line };
      navigate(fileUrl(projectId, file));
    }
  };

  void text.editor.then((view) => {
    editor = view;
    if (pendingJump && pendingJump.projectId === projectId && pendingJump.path === path) {
      gotoLine(pendingJump.line);
      pendingJump = null;
    }
    render();
  });

  // Auto-build: this browser's own edits (not collaborators', whose browsers ask for
  // theirs), once they settle.
  let autoTimer: number | undefined;
  let firstEdit = 0;
  text.ytext.observe((_event, tr) => {
    if (!tr.local || !auto) return;
    const now = Date.now();
    if (!firstEdit) firstEdit = now;
    clearTimeout(autoTimer);
    autoTimer = window.setTimeout(() => void build(), Math.max(0, Math.min(SETTLE_MS, firstEdit + AT_MOST_MS - now)));
  });

  async function build(): Promise<void> {
    clearTimeout(autoTimer);
    firstEdit = 0;
    try {
      const res = await client.call<{ path: string; build: number; status: string }>("latex.build", { project_id: projectId, path });
      if (res.path !== main) {
        main = res.path;
        localStorage.setItem(mainKey(projectId, path), main);
        render();
      }
    } catch (err) {
      toast(err instanceof ApiError ? err.message : String(err), "error");
    }
  }

  async function stop(): Promise<void> {
    try {
      await client.call("latex.stop", { project_id: projectId, path: main });
    } catch (err) {
      if (!(err instanceof ApiError && err.code === "no_build")) toast(err instanceof Error ? err.message : String(err), "error");
    }
  }

  async function forward(): Promise<void> {
    if (!editor) return;
    const head = editor.state.selection.main.head;
    const line = editor.state.doc.lineAt(head);
    try {
      const box = await client.call<PdfBox>("latex.forward", { project_id: projectId, path: main, source: path, line: line.number, column: head - line.from });
      preview?.scrollToBox(box);
    } catch (err) {
      if (err instanceof ApiError && err.code === "no_pdf") toast("Build the document first", "error");
      else if (err instanceof ApiError && err.code === "no_position") toast(`Line ${line.number} is not in the PDF`, "error");
      else toast(err instanceof Error ? err.message : String(err), "error");
    }
  }

  const inverse = async (p: PdfPoint) => {
    try {
      const res = await client.call<{ file: string; line: number }>("latex.inverse", { project_id: projectId, path: main, ...p });
      if (inProject(res.file)) open(res.file, res.line);
      else toast(`That text comes from ${res.file}`);
    } catch (err) {
      if (!(err instanceof ApiError && err.code === "no_position")) toast(err instanceof Error ? err.message : String(err), "error");
    }
  };
  const previewReady = import("./pdf").then(({ PdfPreview }) => {
    if (destroyed) return null;
    const p = new PdfPreview();
    p.onPoint((point) => void inverse(point));
    p.onZoom(() => {
      zoomLabel.textContent = `${p.percent}%`;
      fitBtn.setAttribute("aria-pressed", String(p.fitting));
    });
    pdfHost.prepend(p.el);
    preview = p;
    render();
    return p;
  });

  const who = (ids: unknown): string => {
    if (!Array.isArray(ids) || ids.length === 0) return "";
    const list = ids.map((id) => (id === account.account_id ? "you" : names.get(String(id)) ?? "a collaborator"));
    return list.length > 2 ? `${list.slice(0, 2).join(", ")} and ${list.length - 2} more` : list.join(" and ");
  };

  function renderState(row: Row | undefined): void {
    const status = row ? String(row.status) : "none";
    stateEl.dataset.status = status;
    stateEl.dataset.build = row ? String(row.build) : "";
    buildBtn.toggleAttribute("data-busy", BUSY.has(status));
    stopBtn.hidden = !BUSY.has(status);
    const by = row ? who(row.requested_by) : "";
    const badge = (cls: string, glyph: Node, label: string) => h("span", { class: `latex-badge ${cls}` }, glyph, label);
    let main_: Node;
    let detail = "";
    switch (status) {
      case "queued": main_ = badge("busy", h("span", { class: "spinner" }), "Queued"); detail = by ? `for ${by}` : ""; break;
      case "running": main_ = badge("busy", h("span", { class: "spinner" }), "Building…"); detail = by ? `for ${by}` : ""; break;
      case "succeeded": main_ = badge("ok", icon("check", 13), `Built in ${seconds(row!.milliseconds)}`); detail = [by && `by ${by}`, relativeTime(row!.finished)].filter(Boolean).join(" · "); break;
      case "failed": main_ = badge("bad", icon("alert", 13), row!.milliseconds != null ? `Failed after ${seconds(row!.milliseconds)}` : "Failed"); detail = [by && `by ${by}`, relativeTime(row!.finished)].filter(Boolean).join(" · "); break;
      case "cancelled": main_ = badge("", icon("stop", 12), "Stopped"); detail = relativeTime(row!.finished); break;
      default: main_ = badge("", icon("tex", 13), "Not built yet");
    }
    replace(stateEl, main_, detail ? h("span", { class: "latex-detail muted" }, detail) : null);
  }

  function renderProblems(row: Row | undefined, problems: Problem[]): void {
    const n = { error: count(problems, "error"), warning: count(problems, "warning"), badbox: count(problems, "badbox") };
    const toggle = () => { showProblems = !showProblems; render(); };
    const pill = (sev: keyof typeof n, one: string, many: string) => n[sev]
      ? h("button", { class: `count count-${sev}`, "aria-expanded": String(showProblems), "aria-controls": "latex-problems", onclick: toggle }, `${n[sev]} ${n[sev] === 1 ? one : many}`)
      : null;
    const message = row && row.status === "failed" && row.message ? String(row.message) : "";
    replace(countsEl,
      pill("error", "error", "errors"), pill("warning", "warning", "warnings"), pill("badbox", "bad box", "bad boxes"),
      !problems.length && message ? h("button", { class: "count count-error", "aria-expanded": String(showProblems), onclick: toggle }, "Log") : null);
    problemsEl.id = "latex-problems";
    problemsEl.hidden = !showProblems || (!problems.length && !message);
    replace(problemsEl,
      message && !problems.some((p) => p.severity === "error") ? h("p", { class: "latex-message" }, message) : null,
      problemList(problems, (p) => { if (inProject(p.file) && p.line !== null) open(p.file, p.line); }));
  }

  function renderEmpty(row: Row | undefined): void {
    const hasPdf = preview?.hasPdf ?? false;
    emptyEl.hidden = hasPdf;
    if (hasPdf) return;
    const busy = row && BUSY.has(String(row.status));
    replace(emptyEl,
      h("div", { class: "empty-icon" }, busy ? h("span", { class: "spinner" }) : icon("tex", 28)),
      h("h2", null, busy ? "Building the PDF…" : "No PDF yet"),
      h("p", { class: "muted" }, busy ? "It shows here when the build is done." : row?.status === "failed" ? "The build made no PDF; the log says why." : `Build with ${MOD}-Enter, or turn on auto-build and type.`));
  }

  function render(): void {
    if (destroyed) return;
    const row = rows.get(main);
    const problems = problemsOf(row);
    renderState(row);
    renderProblems(row, problems);
    renderEmpty(row);
    // Set again only for another build's log: the lint state maps its marks through edits.
    const diagKey = row ? `${main}:${row.build}:${row.status}` : "";
    if (editor && diagKey !== shownDiagnostics) {
      shownDiagnostics = diagKey;
      editor.dispatch(setDiagnostics(editor.state, diagnosticsFor(editor.state.doc, problems, path)));
    }
  }

  const onBuild = (row: Row | undefined) => {
    const seen = row ? `${row.build}:${row.status}` : "";
    if (seen === lastSeen) return;
    const first = lastSeen === "";
    lastSeen = seen;
    if (!row) return;
    const busy = BUSY.has(String(row.status));
    // A new result opens the log when it has errors and closes it when it has none.
    if (!busy && !first) showProblems = count(problemsOf(row), "error") > 0 || (row.status === "failed" && !problemsOf(row).length);
    if (first && row.status === "failed") showProblems = true;
    // A build that ended may have made a new PDF (a failed one, too, keeps or replaces it).
    if (row.pdf && (!busy || first)) void previewReady.then((p) => p?.refresh(pdfUrl(projectId, main))).then(render);
  };

  const feeds = [
    liveRows(client, {
      latex_builds: [{
        project_id: projectId, path: null, build: null, status: null, engine: null, requested_by: null, message: null,
        errors: null, warnings: null, badboxes: null, pdf: null, milliseconds: null, requested: null, finished: null,
      }],
    }, (r) => String(r.path), (all) => {
      rows = all;
      onBuild(rows.get(main));
      render();
    }),
    liveRows(client, { collaborators: [{ project_id: projectId, account_id: null, name: null }] }, (r) => String(r.account_id), (all) => {
      names = new Map([...all.values()].map((r) => [String(r.account_id), String(r.name || "")]));
      render();
    }),
  ];
  const clock = window.setInterval(render, 30000);
  render();

  return {
    destroy: () => {
      destroyed = true;
      clearTimeout(autoTimer);
      clearInterval(clock);
      host.removeEventListener("keydown", onKey);
      for (const f of feeds) f.cancel();
      preview?.destroy();
      text.destroy();
    },
  };
}
