// One cell of the notebook: its prompt (execution count and state), its editor (CodeMirror
// bound to the cell's source Y.Text by y-codemirror.next) or rendered markdown, its outputs
// and its input prompt. A cell far from the viewport is unmounted: it keeps only its height,
// so that a notebook of thousands of cells costs what is on screen.

import { closeBrackets } from "@codemirror/autocomplete";
import { indentWithTab, defaultKeymap } from "@codemirror/commands";
import { bracketMatching, indentOnInput, type LanguageSupport, syntaxHighlighting } from "@codemirror/language";
import { EditorState, type Extension, Prec } from "@codemirror/state";
import { drawSelection, EditorView, keymap } from "@codemirror/view";
import type { YCellType } from "@jupyter/ydoc";
import { highlightCode } from "@lezer/highlight";
import { StyleModule } from "style-mod";
import { yCollab, yUndoManagerKeymap } from "y-codemirror.next";
import * as Y from "yjs";
import { h, relativeTime, replace } from "../ui/dom";
import { editorTheme, highlight } from "../editors/codemirror";
import type { Attachments } from "../editors/markdown";
import { markdownWithMath } from "./math";
import type { CellAwareness } from "./cursors";
import { type Output, type OutputContext, renderOutput } from "./outputs";

export type ExecutionState = "queued" | "running" | "idle" | "not_run" | undefined;

export interface InputRequest {
  cell_id: string;
  prompt: string;
  password: boolean;
}

/** What a cell needs from its notebook. */
export interface CellHost {
  projectId: string;
  path: string;
  /** The awareness an editor of `text` shows the cursors of (those in that text). */
  awareness(text: Y.Text): CellAwareness;
  languages: { python: LanguageSupport; markdown: LanguageSupport };
  /** The cell's editor got focus: it is the active cell, in edit mode. */
  focused(cell: CellView): void;
  /** Keys the editor hands to the notebook (run, leave edit mode, move between cells). */
  editorKey(cell: CellView, key: "run" | "run-stay" | "run-insert" | "escape" | "up" | "down"): void;
  /** Its place in the kernel's queue (1 = next), or null. */
  queuePlace(cell: CellView): number | null;
  input(): InputRequest | null;
  answer(value: string): Promise<void>;
  /** The newest recorded run of this cell (the `executions` table), if any. */
  lastRun(cell: CellView): RunRecord | null;
  /** False for a viewer: the editor is read-only. */
  writable(): boolean;
}

/** One row of the `executions` table, as the notebook uses it. */
export interface RunRecord {
  execution_id: string;
  seq: number;
  cell_id: string;
  name: string;
  account_id: string | null;
  status: string;
  session: string;
  source: string;
  error: string;
  execution_count: number | null;
  requested: string;
  finished: string | null;
}

const cellTheme = EditorView.theme({
  "&": { height: "auto", backgroundColor: "transparent" },
  ".cm-content": { padding: "8px 0" },
  ".cm-line": { padding: "0 12px" },
  ".cm-scroller": { lineHeight: "1.55" },
});

// What every cell's editor has; built once, shared by all of them.
const shared: Extension = [
  drawSelection(), indentOnInput(), bracketMatching(), closeBrackets(),
  keymap.of([...yUndoManagerKeymap, ...defaultKeymap, indentWithTab]),
  syntaxHighlighting(highlight), editorTheme, cellTheme, EditorView.lineWrapping,
];

function lineCount(text: string): number {
  let n = 1;
  for (let i = text.indexOf("\n"); i !== -1; i = text.indexOf("\n", i + 1)) n++;
  return n;
}

export class CellView {
  readonly el: HTMLElement;
  mounted = false;
  /** A markdown cell shows its editor (instead of its rendering) while this is true. */
  editing = false;
  private editor: EditorView | null = null;
  private body: HTMLElement | null = null;
  private prompt: HTMLElement | null = null;
  private status: HTMLElement | null = null;
  private outputs: HTMLElement | null = null;
  private inputHost: HTMLElement | null = null;
  private runByEl: HTMLElement | null = null;
  private rendered: HTMLElement | null = null;
  // The code shown without an editor (`renderInput(true)`), until `upgrade`.
  private staticCode: HTMLElement | null = null;
  // The markdown rendering last made, and what it was made from: a cell scrolled away and
  // back is not parsed, sanitised and typeset again.
  private renderedFrom: { key: string; el: HTMLElement } | null = null;
  private expanded = new Set<number>();
  private frame = 0;
  // Outputs to render again at the next frame: all of them, or those at these indexes
  // (a stream that grew, a display updated), whose elements are `outputEls`.
  private dirty: { outputs: boolean | Set<number>; state: boolean; markdown: boolean } = { outputs: false, state: false, markdown: false };
  private outputEls: HTMLElement[] = [];
  private timer: number | undefined;
  private runningSince = 0;
  private height = 0;
  // What `prepare` built and `attach` has not yet put on the page.
  private parts: HTMLElement[] | null = null;
  // The cell's own undo history: it outlives the editor (a cell scrolled away and back
  // keeps it), and goes when the cell does, or at unmount when there is nothing in it.
  private undo: Y.UndoManager | null = null;

  constructor(readonly cell: YCellType, readonly host: CellHost) {
    this.el = h("div", { class: "cell", "data-cell-id": cell.id, "data-type": cell.cell_type });
    this.el.style.minHeight = `${this.estimate()}px`;
  }

  get id(): string {
    return this.cell.id;
  }

  get type(): string {
    return this.cell.cell_type;
  }

  get state(): ExecutionState {
    return this.cell.ymodel.get("execution_state") as ExecutionState;
  }

  private estimate(): number {
    if (this.height) return this.height;
    const lines = lineCount(this.cell.ysource.toString());
    const outs = this.cell.ymodel.get("outputs") as Y.Array<unknown> | undefined;
    return 18 + lines * 21 + (outs?.length ? 28 * Math.min(outs.length, 10) : 0);
  }

  mount(): void {
    this.prepare(false);
    this.attach();
  }

  /** The first half of `mount`: the cell's content built off the page. CodeMirror reads
   * the page's layout in its constructor (the selection, the fonts), which costs a layout
   * of the page each time it changed: editors made off the page, one after another, share
   * one (the window mounts a frame's cells with all their `prepare`s, then `attach`es). */
  /** `lazy`: the cell's code is shown without an editor (`needsEditor` until `upgrade`). */
  prepare(lazy: boolean): void {
    if (this.mounted) return;
    this.mounted = true;
    this.prompt = h("div", { class: "cell-prompt", "aria-label": "Execution count" });
    this.status = h("div", { class: "cell-status" });
    this.body = h("div", { class: "cell-input" });
    this.outputs = h("div", { class: "cell-outputs", "aria-live": "polite" });
    this.inputHost = h("div", { class: "cell-stdin" });
    this.runByEl = h("div", { class: "cell-runby", "data-testid": "run-by" });
    const gutter = h("div", { class: "cell-gutter" }, this.prompt, this.status);
    this.parts = [h("div", { class: "cell-bar" }), gutter, h("div", { class: "cell-main" }, this.runByEl, this.body, this.outputs, this.inputHost)];
    this.dirty = { outputs: false, state: false, markdown: false };
    this.renderInput(lazy);
    this.renderState();
    this.renderRunBy();
    this.renderOutputs();
    this.renderStdin();
    this.cell.ymodel.observeDeep(this.onChange);
  }

  /** Mounted, showing its code without an editor (it was prepared `lazy`). */
  get needsEditor(): boolean {
    return this.staticCode !== null;
  }

  /** The editor in place of the code shown without one. */
  upgrade(): void {
    if (this.staticCode) this.renderInput();
  }

  /** The second half of `mount`: what `prepare` built goes on the page. */
  attach(): void {
    if (!this.parts) return;
    replace(this.el, ...this.parts);
    this.parts = null;
    this.el.style.minHeight = "";
  }

  /** `height` is the cell's current height, when the caller has read it already. */
  unmount(height?: number): void {
    if (!this.mounted || this.el.contains(document.activeElement)) return;
    this.height = height ?? this.el.offsetHeight;
    this.teardown();
    this.el.replaceChildren();
    this.el.style.minHeight = `${this.height}px`;
  }

  destroy(): void {
    this.teardown();
    this.undo?.destroy();
    this.undo = null;
    this.el.remove();
  }

  private teardown(): void {
    if (!this.mounted) return;
    this.mounted = false;
    this.parts = null;
    this.cell.ymodel.unobserveDeep(this.onChange);
    cancelAnimationFrame(this.frame);
    this.frame = 0;
    clearInterval(this.timer);
    this.timer = undefined;
    this.editor?.destroy();
    this.editor = null;
    this.rendered = null;
    this.staticCode = null;
    this.runByEl = null;
    // Every undo manager listens to every transaction of the document: keep only those
    // with something to undo.
    if (this.undo && !this.undo.undoStack.length && !this.undo.redoStack.length) {
      this.undo.destroy();
      this.undo = null;
    }
  }

  /** The editor again, after the notebook became writable or read-only. */
  resetEditor(): void {
    if (!this.mounted || !this.editor) return;
    this.editor.destroy();
    this.editor = null;
    this.renderInput();
    if (this.inputHost) { delete this.inputHost.dataset.prompt; this.renderStdin(); }
  }

  /** "run by Ada · 2 min ago" from the cell's newest recorded run. */
  renderRunBy(): void {
    const el = this.runByEl;
    if (!el) return;
    const run = this.type === "code" ? this.host.lastRun(this) : null;
    el.hidden = !run;
    if (!run) { el.textContent = ""; return; }
    const who = run.name || "someone";
    const when = relativeTime(run.finished ?? run.requested);
    const outcome = run.status === "ok" || run.status === "running" || run.status === "queued" ? "" : ` · ${run.status}`;
    el.textContent = `run by ${who} · ${when}${outcome}`;
    el.title = `${who} ran this cell ${new Date(run.finished ?? run.requested).toLocaleString()}${run.error ? ` — ${run.error}` : ""}`;
    el.dataset.status = run.status;
  }

  // Changes to this cell only, coalesced to one render per frame.
  private onChange = (events: Y.YEvent<Y.AbstractType<unknown>>[]): void => {
    const model = this.cell.ymodel;
    const outputs = model.get("outputs");
    for (const e of events) {
      if (e.target === model) {
        const keys = (e as Y.YMapEvent<unknown>).keysChanged;
        // The count is in an execute_result's prompt.
        if (keys.has("outputs") || keys.has("execution_count")) this.dirty.outputs = true;
        if (keys.has("execution_state") || keys.has("execution_count")) this.dirty.state = true;
        if (keys.has("attachments")) this.dirty.markdown = true;
      } else if (e.target === this.cell.ysource) this.dirty.markdown = true;
      else if (outputs instanceof Y.Array && this.dirty.outputs !== true) {
        if (e.target === outputs) { this.dirty.outputs = true; continue; }
        const one = childOf(e.target, outputs as unknown as Y.AbstractType<unknown>);
        if (!one) continue;
        const index = outputs.toArray().indexOf(one);
        if (index < 0 || index >= this.outputEls.length) this.dirty.outputs = true;
        else (this.dirty.outputs instanceof Set ? this.dirty.outputs : (this.dirty.outputs = new Set())).add(index);
      }
    }
    if (!this.frame) this.frame = requestAnimationFrame(this.flush);
  };

  private flush = (): void => {
    this.frame = 0;
    if (!this.mounted) return;
    if (this.dirty.state) this.renderState();
    if (this.dirty.outputs instanceof Set) for (const i of this.dirty.outputs) this.renderOutput(i);
    else if (this.dirty.outputs) this.renderOutputs();
    if (this.dirty.markdown && this.rendered) this.renderMarkdown();
    else if (this.dirty.markdown && this.staticCode) this.renderStatic();
    this.dirty = { outputs: false, state: false, markdown: false };
  };

  // -- input ---------------------------------------------------------------------------

  /** The cell's input: its markdown rendered, its editor, or (`lazy`, for a cell shown while
   * the notebook scrolls) its code highlighted without an editor, laid out as the editor
   * lays it out. An editor costs a few layouts of the page to make; a scroll through
   * thousands of cells makes none, and the window upgrades the cells it left once the
   * scrolling stops. */
  renderInput(lazy = false): void {
    if (!this.mounted || !this.body) return;
    const showRendered = this.type === "markdown" && !this.editing;
    this.el.classList.toggle("rendered", showRendered);
    if (showRendered) {
      this.editor?.destroy();
      this.editor = null;
      const kept = this.renderedFrom?.key === this.markdownKey() ? this.renderedFrom.el : null;
      this.rendered = kept ?? h("div", { class: "cell-rendered markdown", ondblclick: () => { this.edit(); } });
      replace(this.body, this.rendered);
      if (!kept) this.renderMarkdown();
      return;
    }
    this.rendered = null;
    if (this.editor) return;
    if (lazy) {
      this.renderStatic();
      return;
    }
    this.staticCode = null;
    const language = this.type === "code" ? this.host.languages.python : this.type === "markdown" ? this.host.languages.markdown : [];
    const ysource = this.cell.ysource;
    const key = (k: Parameters<CellHost["editorKey"]>[1]) => () => { this.host.editorKey(this, k); return true; };
    this.editor = new EditorView({
      state: EditorState.create({
        doc: ysource.toString(),
        extensions: [
          Prec.highest(keymap.of([
            { key: "Shift-Enter", run: key("run") },
            { key: "Mod-Enter", run: key("run-stay") },
            { key: "Alt-Enter", run: key("run-insert") },
            { key: "Escape", run: key("escape") },
            { key: "ArrowUp", run: (v) => atEdge(v, "start") && key("up")() },
            { key: "ArrowDown", run: (v) => atEdge(v, "end") && key("down")() },
          ])),
          shared, language,
          EditorView.contentAttributes.of({ "aria-label": `${this.type} cell` }),
          EditorState.readOnly.of(!this.host.writable()),
          EditorView.domEventHandlers({ focus: () => { this.host.focused(this); return false; } }),
          yCollab(ysource, this.host.awareness(ysource), { undoManager: (this.undo ??= new Y.UndoManager(ysource)) }),
        ],
      }),
    });
    replace(this.body, this.editor.dom);
  }

  /** The code with its highlighting and no editor (`renderInput(true)`). */
  private renderStatic(): void {
    if (!this.body) return;
    const text = this.cell.ysource.toString();
    const code = h("div", { class: "cell-static", "data-testid": "cell-static" });
    let line = h("div");
    code.append(line);
    const put = (part: string, classes: string) => { line.append(classes ? h("span", { class: classes }, part) : part); };
    const next = () => {
      if (!line.firstChild) line.append(h("br"));
      line = h("div");
      code.append(line);
    };
    if (this.type === "code") {
      if (highlight.module) StyleModule.mount(document, highlight.module);
      highlightCode(text, this.host.languages.python.language.parser.parse(text), highlight, put, next);
    } else {
      text.split("\n").forEach((part, i) => { if (i) next(); if (part) put(part, ""); });
    }
    if (!line.firstChild) line.append(h("br"));
    code.addEventListener("mousedown", this.onStaticDown);
    replace(this.body, code);
    this.staticCode = code;
  }

  // A click in code shown without an editor: the editor, with the cursor where the click was.
  private onStaticDown = (e: MouseEvent): void => {
    if (e.button !== 0) return;
    e.preventDefault();
    e.stopPropagation();
    // Found in the code shown (the new editor has not measured its lines yet).
    const pos = this.staticOffset(e.clientX, e.clientY);
    this.renderInput();
    const view = this.editor;
    if (!view) return;
    view.focus();
    if (pos !== null) view.dispatch({ selection: { anchor: Math.min(pos, view.state.doc.length) } });
  };

  /** The offset in the source of the point (x, y) of the code shown without an editor. */
  private staticOffset(x: number, y: number): number | null {
    const code = this.staticCode;
    const at = document.caretRangeFromPoint?.(x, y);
    if (!code || !at || !code.contains(at.startContainer)) return null;
    let offset = 0;
    for (const line of code.children) {
      if (line.contains(at.startContainer)) {
        const before = document.createRange();
        before.setStart(line, 0);
        before.setEnd(at.startContainer, at.startOffset);
        return offset + before.toString().length;
      }
      offset += (line.textContent ?? "").length + 1;
    }
    return null;
  }

  /** Edit mode: the editor (a markdown cell shows its source), focused. */
  edit(at: "start" | "end" | null = null): void {
    if (this.type === "markdown" && !this.editing) {
      this.editing = true;
      this.renderInput();
    } else if (!this.editor) this.renderInput();
    const view = this.editor;
    if (!view) return;
    if (at === "start") view.dispatch({ selection: { anchor: 0 } });
    else if (at === "end") view.dispatch({ selection: { anchor: view.state.doc.length } });
    view.focus();
  }

  /** Leaves edit mode; a markdown cell is rendered again when `render`. */
  blur(render: boolean): void {
    this.editor?.contentDOM.blur();
    if (render && this.type === "markdown" && this.editing) {
      this.editing = false;
      this.renderInput();
    }
  }

  get hasFocus(): boolean {
    return this.editor?.hasFocus ?? false;
  }

  private attachments(): Attachments | undefined {
    const attachments = (this.cell.ymodel.get("attachments") ?? undefined) as Attachments | Y.Map<unknown> | undefined;
    return attachments instanceof Y.Map ? (attachments.toJSON() as Attachments) : attachments;
  }

  private markdownKey(): string {
    const attachments = this.attachments();
    return attachments ? JSON.stringify([this.cell.ysource.toString(), attachments]) : this.cell.ysource.toString();
  }

  private renderMarkdown(): void {
    if (!this.rendered) return;
    const source = this.cell.ysource.toString();
    const attachments = this.attachments();
    if (!source.trim()) replace(this.rendered, h("p", { class: "muted cell-empty" }, "Empty markdown cell — double-click or press Enter to edit"));
    else replace(this.rendered, markdownWithMath(source, this.host.projectId, this.host.path, attachments));
    this.renderedFrom = { key: this.markdownKey(), el: this.rendered };
  }

  // -- state and outputs -----------------------------------------------------------------

  renderState(): void {
    if (!this.prompt || !this.status) return;
    if (this.type !== "code") {
      this.prompt.textContent = "";
      this.status.textContent = "";
      return;
    }
    const state = this.state;
    const count = this.cell.ymodel.get("execution_count") as number | null | undefined;
    const busy = state === "queued" || state === "running";
    this.el.dataset.state = state ?? "";
    this.prompt.textContent = `[${busy ? "*" : count ?? " "}]`;
    clearInterval(this.timer);
    this.timer = undefined;
    if (state === "running") {
      this.runningSince ||= Date.now();
      const tick = () => {
        const s = Math.floor((Date.now() - this.runningSince) / 1000);
        if (this.status) this.status.textContent = s < 60 ? `running ${s}s` : `running ${Math.floor(s / 60)}m ${s % 60}s`;
      };
      tick();
      this.timer = window.setInterval(tick, 1000);
    } else {
      this.runningSince = 0;
      if (state === "queued") {
        const place = this.host.queuePlace(this);
        this.status.textContent = place ? `queued · ${ordinal(place)}` : "queued";
      } else if (state === "not_run") this.status.textContent = "not run";
      else this.status.textContent = "";
    }
  }

  renderOutputs(): void {
    if (!this.outputs || this.type !== "code") return;
    const youts = this.cell.ymodel.get("outputs") as Y.Array<unknown> | undefined;
    const list = (youts?.toJSON() ?? []) as Output[];
    this.outputEls = list.map((out, i) => this.outputElement(out, i));
    replace(this.outputs, this.outputEls);
    this.el.classList.toggle("has-outputs", list.length > 0);
  }

  /** The output at `index` again, alone (the others are unchanged). */
  private renderOutput(index: number): void {
    const youts = this.cell.ymodel.get("outputs") as Y.Array<unknown> | undefined;
    const old = this.outputEls[index];
    if (!this.outputs || !old || !youts || index >= youts.length) { this.renderOutputs(); return; }
    const item = youts.get(index) as unknown;
    const out = (item instanceof Y.AbstractType ? item.toJSON() : item) as Output;
    const el = this.outputElement(out, index);
    old.replaceWith(el);
    this.outputEls[index] = el;
  }

  private outputElement(out: Output, index: number): HTMLElement {
    const ctx: OutputContext = {
      projectId: this.host.projectId,
      path: this.host.path,
      expanded: this.expanded,
      onExpand: (i) => { this.expanded.add(i); this.renderOutput(i); },
    };
    const count = this.cell.ymodel.get("execution_count") as number | null | undefined;
    return h("div", { class: `output output-${out.output_type}` },
      h("div", { class: "output-prompt" }, out.output_type === "execute_result" && count != null ? `[${count}]:` : ""),
      renderOutput(out, index, ctx));
  }

  renderStdin(): void {
    if (!this.inputHost) return;
    const request = this.host.input();
    if (!request || request.cell_id !== this.id) {
      this.inputHost.replaceChildren();
      return;
    }
    if (this.inputHost.dataset.prompt === `${request.prompt}|${request.password}` && this.inputHost.firstChild) return;
    this.inputHost.dataset.prompt = `${request.prompt}|${request.password}`;
    const field = h("input", { class: "input stdin-field", type: request.password ? "password" : "text", "aria-label": request.prompt || "Input", autocomplete: "off", spellcheck: false, disabled: !this.host.writable() });
    const form = h("form", { class: "stdin", onsubmit: async (e: Event) => {
      e.preventDefault();
      field.disabled = true;
      try { await this.host.answer(field.value); } finally { field.disabled = false; }
    } },
    // Whatever the prompt says, the answer goes to the program running in the project
    // (anyone's code), never to collab: said beside it, so a prompt cannot pass for ours.
    h("span", { class: "stdin-source muted small" }, "The running program asks:"),
    h("label", { class: "stdin-prompt" }, request.prompt), field);
    replace(this.inputHost, form);
    if (this.el.classList.contains("active")) field.focus();
  }
}

function atEdge(view: EditorView, edge: "start" | "end"): boolean {
  const sel = view.state.selection.main;
  if (!sel.empty) return false;
  const line = view.state.doc.lineAt(sel.head);
  return edge === "start" ? line.number === 1 : line.number === view.state.doc.lines;
}

/** The child of `ancestor` that `t` is, or is inside of. */
function childOf(t: Y.AbstractType<unknown>, ancestor: Y.AbstractType<unknown>): Y.AbstractType<unknown> | null {
  for (let c: Y.AbstractType<unknown> | null = t; c; c = c.parent as Y.AbstractType<unknown> | null) if (c.parent === ancestor) return c;
  return null;
}

function ordinal(n: number): string {
  const s = n % 100 >= 11 && n % 100 <= 13 ? "th" : ["th", "st", "nd", "rd"][n % 10] ?? "th";
  return `${n}${s}`;
}
