// The notebook view: the shared jupyter-ydoc YNotebook over the app's y-websocket
// connection, cells rendered only near the viewport, Jupyter's command/edit keyboard model,
// and execution through the server's kernel calls (outputs arrive through the document).

import type { ISharedCell } from "@jupyter/ydoc";
import { YNotebook, type YCellType } from "@jupyter/ydoc";
import type * as Y from "yjs";
import { type Feed, liveRows } from "../api/ws";
import { session } from "../session";
import { confirm, h, icon, relativeTime, replace, toast } from "../ui/dom";
import type { DocView } from "../editors/open";
import { watchPresence } from "../editors/presence";
import { openShared } from "../editors/yjs";
import { type CellHost, CellView, type InputRequest, type RunRecord } from "./cell";
import { CursorRouter } from "./cursors";
import { CellWindow } from "./window";

type CellJSON = Record<string, unknown> & { cell_type: string };
type Mode = "command" | "edit";

// Two presses of D, I or 0 in a row, within this many ms, make the command.
const DOUBLE_PRESS_MS = 1500;

let clipboard: CellJSON[] = [];

function fresh(json: CellJSON): CellJSON {
  const { id: _id, ...rest } = json;
  return rest.cell_type === "code" ? { ...rest, outputs: rest.outputs ?? [], execution_count: rest.execution_count ?? null } : rest;
}

export function openNotebook(host: HTMLElement, projectId: string, path: string): DocView {
  const { client } = session();
  const model = new YNotebook();
  const shared = openShared(projectId, path, model.ydoc);
  const kernelMap = model.ydoc.getMap("kernel") as Y.Map<unknown>;
  const views: CellView[] = [];
  // Where a cell is, by id (presence, follow mode, the runs panel): built when asked,
  // dropped when cells come or go.
  let placeById: Map<string, number> | null = null;
  const placeOf = (id: string): number | undefined => {
    if (!placeById) {
      placeById = new Map();
      for (let i = 0; i < views.length; i++) if (!placeById.has(views[i]!.id)) placeById.set(views[i]!.id, i);
    }
    return placeById.get(id);
  };
  let active: CellView | null = null;
  let anchor: CellView | null = null;
  let mode: Mode = "command";
  const deleted: { index: number; cells: CellJSON[] }[] = [];
  let lastKey = { key: "", at: 0 };
  let destroyed = false;
  let kernelRow: { status?: string; kernel_name?: string } = {};
  // A viewer sees everything live and changes nothing (the server drops its updates and
  // refuses its calls; this only keeps the page honest about it).
  let readOnly = false;

  const list = h("div", { class: "nb-cells", tabindex: 0, role: "list", "aria-label": "Cells", "data-mode": "command" });
  const scroller = h("div", { class: "nb-scroll" }, list);
  const people = h("div", { class: "presence", "aria-label": "People in this notebook" });
  const followBanner = h("div", { class: "nb-following", hidden: true, "data-testid": "following" });
  const runsList = h("ol", { class: "nb-runs-list", "aria-label": "Executions" });
  const runsPanel = h("aside", { class: "nb-runs", hidden: true, "aria-label": "Who ran what", "data-testid": "runs-panel" },
    h("div", { class: "nb-runs-head" }, h("strong", {}, "Who ran what"), h("span", { class: "muted small" }, "newest first")),
    runsList);
  const kernelBadge = h("span", { class: "kernel-badge badge", "data-testid": "kernel-status" });
  // The kernel picker: the kernelspecs the server offers (kernel.specs); picking one
  // writes the notebook's kernelspec metadata and restarts the kernel as it.
  const kernelPicker = h("select", { class: "input input-sm kernel-picker", "aria-label": "Kernel", "data-testid": "kernel-picker", onchange: () => void pickKernel(kernelPicker.value) }) as HTMLSelectElement;
  let specs: { name: string; display_name: string }[] = [];
  const empty = h("div", { class: "nb-empty", hidden: true },
    h("p", { class: "muted" }, "This notebook has no cells yet."),
    h("div", { class: "btn-group" },
      h("button", { class: "btn btn-sm", onclick: () => insertAt(0, "code") }, icon("plus", 14), "Code cell"),
      h("button", { class: "btn btn-sm", onclick: () => insertAt(0, "markdown") }, icon("plus", 14), "Markdown cell")));
  list.append(empty);

  const tool = (label: string, iconName: string | null, run: () => void, extra: Record<string, unknown> = {}) =>
    h("button", { class: iconName && !extra.text ? "btn btn-icon btn-sm" : "btn btn-ghost btn-sm", title: label, "aria-label": label, onclick: run, ...extra }, iconName ? icon(iconName, 15) : null, extra.text ? String(extra.text) : null);
  const menu = (label: string, items: [string, () => void][]) => {
    const details = h("details", { class: "menu" },
      h("summary", { class: "btn btn-ghost btn-sm", "aria-label": label }, label, icon("chevron", 12)),
      h("div", { class: "menu-items", role: "menu" }, items.map(([text, run]) => h("button", { class: "menu-item", role: "menuitem", onclick: () => { details.open = false; run(); } }, text))));
    return details;
  };
  const typeSelect = h("select", { class: "input cell-type-select", "aria-label": "Cell type", onchange: () => setType(typeSelect.value) },
    h("option", { value: "code" }, "Code"), h("option", { value: "markdown" }, "Markdown"), h("option", { value: "raw" }, "Raw"));
  const viewOnly = h("span", { class: "badge nb-view-only", hidden: true, "data-testid": "view-only", title: "You are a viewer in this project: you see changes live but cannot edit or run" }, icon("eye", 13), "View only");
  const tools = h("div", { class: "nb-tools" },
      tool("Insert a cell below (B)", "plus", () => insertBelow()),
      tool("Run the cell and select the next (Shift-Enter)", "play", () => void runSelected("next"), { text: "Run", "data-testid": "run" }),
      tool("Interrupt the kernel (I, I)", "stop", () => void interrupt(), { "data-testid": "interrupt" }),
      tool("Restart the kernel (0, 0)", "restart", () => void restart(false), { "data-testid": "restart" }),
      menu("Run all", [
        ["Run all", () => void runAll("all")],
        ["Run all above", () => void runAll("above")],
        ["Run selected and all below", () => void runAll("below")],
        ["Restart and run all", () => void restart(true)],
      ]),
      menu("Edit", [
        ["Clear outputs of the selected cells", () => clearOutputs(false)],
        ["Clear all outputs", () => clearOutputs(true)],
        ["Undo cell deletion (Z)", () => undoDelete()],
      ]),
      typeSelect);
  const toolbar = h("div", { class: "doc-toolbar nb-toolbar" },
    h("span", { class: "doc-path", title: path }, path),
    tools,
    viewOnly,
    tool("Who ran what in this notebook", "history", () => toggleRuns(), { text: "Runs", "data-testid": "runs-toggle" }),
    people,
    h("div", { class: "kernel-info", "aria-label": "Kernel" }, kernelPicker, kernelBadge));
  replace(host, h("div", { class: "doc nb-doc" }, toolbar, followBanner, h("div", { class: "nb-body" }, scroller, runsPanel)));
  // Follow mode: clicking a collaborator's avatar follows the cell they are in (their
  // presence says which) until the avatar is clicked again or the reader scrolls.
  let following: { id: string; name: string; cell: string | null } | null = null;
  const cellOf = (state: Record<string, unknown>) => ((state.notebook as { cell?: unknown } | undefined)?.cell as string | undefined) ?? null;
  const stopPresence = watchPresence(shared, people, {
    onPick: (id, name) => { if (following?.id === id) unfollow(); else follow(id, name); },
    following: () => following?.id ?? null,
    detail: (state) => {
      const id = cellOf(state);
      const i = id ? placeOf(id) : undefined;
      return i !== undefined ? `in cell ${i + 1}` : "";
    },
  });
  const followedCell = (): string | null => {
    if (!following) return null;
    let cell: string | null = null;
    shared.provider.awareness.getStates().forEach((state, clientId) => {
      const user = (state as { user?: { account_id?: string } }).user;
      if (clientId !== shared.doc.clientID && user?.account_id === following!.id) cell = cellOf(state as Record<string, unknown>) ?? cell;
    });
    return cell;
  };
  const track = () => {
    if (!following) return;
    const cell = followedCell();
    if (!cell || cell === following.cell) return;
    const i = placeOf(cell);
    const view = i === undefined ? undefined : views[i];
    if (!view) return;
    following.cell = cell;
    cells.mount(view);
    const box = view.el.getBoundingClientRect();
    const port = scroller.getBoundingClientRect();
    scroller.scrollTop += box.top - port.top - Math.max(16, (port.height - box.height) / 3);
  };
  function follow(id: string, name: string): void {
    following = { id, name, cell: null };
    replace(followBanner, `Following ${name} — scroll or click their avatar to stop`);
    followBanner.hidden = false;
    stopPresence.render();
    track();
  }
  function unfollow(): void {
    if (!following) return;
    following = null;
    followBanner.hidden = true;
    stopPresence.render();
  }
  shared.provider.awareness.on("change", track);
  // The reader's own scrolling ends follow mode (the view's own scrolls are not these).
  for (const type of ["wheel", "touchmove"]) scroller.addEventListener(type, unfollow, { passive: true });
  scroller.addEventListener("keydown", (e) => { if (["PageUp", "PageDown", "Home", "End", "ArrowUp", "ArrowDown", " "].includes(e.key)) unfollow(); });
  scroller.addEventListener("mousedown", (e) => { if (e.target === scroller) unfollow(); }); // the scrollbar

  // -- cells ---------------------------------------------------------------------------

  let languages: CellHost["languages"] | null = null;
  const cursors = new CursorRouter(shared.provider.awareness);
  const cellHost: Omit<CellHost, "languages"> = {
    projectId,
    path,
    awareness: (text) => cursors.forText(text),
    focused: (cell) => { select(cell, false); setMode("edit"); },
    editorKey: (cell, key) => {
      if (key === "escape") { cell.blur(false); setMode("command"); return; }
      if (key === "up" || key === "down") {
        const next = views[views.indexOf(cell) + (key === "up" ? -1 : 1)];
        if (next) { select(next, false); editActive(key === "up" ? "end" : "start"); }
        return;
      }
      void run([cell], key === "run" ? "next" : key === "run-stay" ? "stay" : "insert");
    },
    queuePlace: (cell) => {
      if (!places) {
        // The server's queue (kernel.queue, next first) is the order runs were asked for;
        // a document from before it existed falls back to the cells' order on the page.
        places = new Map();
        const queue = kernelMap.get("queue") as Y.Array<string> | undefined;
        if (typeof queue?.toArray === "function") {
          queue.toArray().forEach((id) => { if (!places!.has(id)) places!.set(id, places!.size + 1); });
        } else {
          for (const v of views) if (v.state === "queued" && !places.has(v.id)) places.set(v.id, places.size + 1);
        }
      }
      return places.get(cell.id) ?? null;
    },
    input: () => (kernelMap.get("input") as InputRequest | undefined) ?? null,
    lastRun: (cell) => lastRun.get(cell.id) ?? null,
    writable: () => !readOnly,
    answer: async (value) => {
      try { await client.call("kernel.input", { project_id: projectId, path, value }); } catch (err) { toast(String((err as Error).message), "error"); }
    },
  };

  // Only cells near the viewport are mounted; the one being edited stays.
  const cells = new CellWindow(scroller, list, views, (v) => v === active && mode === "edit");
  // Queue places (1 = next) of the queued cells, computed once per change of the queue or of
  // any cell's state.
  let places: Map<string, number> | null = null;

  const makeView = (cell: YCellType): CellView => {
    const view = new CellView(cell, { ...cellHost, languages: languages! });
    (view.el as HTMLElement & { cellView?: CellView }).cellView = view;
    return view;
  };
  // One listener for every cell's clicks (the cell is the list's child the click is in).
  list.addEventListener("mousedown", (e) => {
    let el = e.target as HTMLElement | null;
    if (!el || el.closest(".cm-editor, input, button, a, details")) return;
    while (el && el.parentElement !== list) el = el.parentElement;
    const view = (el as (HTMLElement & { cellView?: CellView }) | null)?.cellView;
    if (!view) return;
    select(view, e.shiftKey);
    if (mode === "edit") setMode("command");
    // Focus after the click lands, so that the list (not the clicked text) takes the keys.
    setTimeout(() => { if (mode === "command") list.focus({ preventScroll: true }); });
  });

  const applyDelta = (delta: { insert?: ISharedCell[]; delete?: number; retain?: number }[]) => {
    let index = 0;
    let lost = -1;
    for (const d of delta) {
      if (d.retain) index += d.retain;
      else if (d.delete) {
        for (const v of views.splice(index, d.delete)) {
          cells.forget(v);
          v.destroy();
          if (v === active) { active = null; lost = index; }
          if (v === anchor) anchor = null;
        }
      } else if (d.insert) {
        const made = (d.insert as YCellType[]).map(makeView);
        const before = views[index]?.el ?? empty;
        const batch = document.createDocumentFragment();
        for (const v of made) batch.append(v.el);
        list.insertBefore(batch, before);
        views.splice(index, 0, ...made);
        index += made.length;
      }
    }
    placeById = null;
    empty.hidden = views.length > 0 || !shared.provider.synced;
    if (!active && views.length) select(views[lost >= 0 ? Math.min(lost, views.length - 1) : 0]!, false);
    refreshQueue();
    cells.schedule();
  };

  const onChanged = (_: unknown, change: { cellsChange?: { insert?: ISharedCell[]; delete?: number; retain?: number }[] }) => {
    if (!change.cellsChange || !languages) return;
    const first = views.length === 0;
    applyDelta(change.cellsChange);
    // The notebook's content arrived: its first screen is mounted in this task, not a frame later.
    if (first) cells.update();
  };

  // Queue places and input prompts concern several cells: one observer on the cells array
  // picks out the execution-state changes (the events name the cells that changed).
  const ycells = model.ydoc.getArray("cells");
  const onCells = (events: Y.YEvent<Y.AbstractType<unknown>>[]) => {
    for (const e of events) {
      if (e.target.parent === ycells && (e as Y.YMapEvent<unknown>).keysChanged?.has("execution_state")) { refreshQueue(); return; }
    }
  };
  const refreshQueue = () => {
    places = null;
    for (const v of cells.mounted) if (v.state === "queued") v.renderState();
  };
  const onKernel = (events: Y.YEvent<Y.AbstractType<unknown>>[]) => {
    if (events.some((e) => e.target !== kernelMap || (e as Y.YMapEvent<unknown>).keysChanged.has("queue"))) refreshQueue();
    if (events.some((e) => e.target === kernelMap)) {
      for (const v of cells.mounted) v.renderStdin();
      renderKernel();
    }
  };

  // -- selection and modes ---------------------------------------------------------------

  const selection = (): CellView[] => {
    if (!active) return [];
    const a = views.indexOf(anchor ?? active);
    const b = views.indexOf(active);
    if (a < 0) return [active];
    return views.slice(Math.min(a, b), Math.max(a, b) + 1);
  };

  // The cells marked active and selected now: a change of selection touches those and the
  // new ones, not every cell.
  let painted: { active: CellView | null; selected: Set<CellView> } = { active: null, selected: new Set() };
  const paint = () => {
    const range = selection();
    const selected = new Set(range.length > 1 ? range : []);
    if (painted.active !== active) {
      painted.active?.el.classList.remove("active");
      active?.el.classList.add("active");
    }
    for (const v of painted.selected) if (!selected.has(v)) v.el.classList.remove("selected");
    for (const v of selected) v.el.classList.add("selected");
    painted = { active, selected };
    if (active) typeSelect.value = active.type;
  };

  function select(view: CellView, extend: boolean): void {
    if (!extend) anchor = view;
    else if (!anchor) anchor = active ?? view;
    if (active !== view) shared.provider.awareness.setLocalStateField("notebook", { cell: view.id });
    active = view;
    paint();
  }

  function setMode(m: Mode): void {
    mode = m;
    list.dataset.mode = m;
    if (m === "command") list.focus({ preventScroll: true });
  }

  const reveal = (view: CellView) => {
    cells.mount(view);
    const box = view.el.getBoundingClientRect();
    const port = scroller.getBoundingClientRect();
    if (box.top < port.top) scroller.scrollTop += box.top - port.top - 16;
    else if (box.bottom > port.bottom) scroller.scrollTop += Math.min(box.bottom - port.bottom + 16, box.top - port.top - 16);
  };

  const move = (by: number, extend: boolean) => {
    if (!active) return;
    const next = views[views.indexOf(active) + by];
    if (!next) return;
    select(next, extend);
    reveal(next);
  };

  function editActive(at: "start" | "end" | null = null): void {
    if (!active) return;
    reveal(active);
    active.edit(at);
    setMode("edit");
  }

  // -- structure ------------------------------------------------------------------------

  function insertAt(index: number, type: "code" | "markdown" = "code"): CellView | null {
    model.insertCell(index, type === "code" ? { cell_type: "code", source: "", metadata: {}, outputs: [], execution_count: null } : { cell_type: type, source: "", metadata: {} });
    const view = views[index] ?? null;
    if (view) { select(view, false); reveal(view); }
    return view;
  }

  function insertBelow(): void {
    insertAt(active ? views.indexOf(active) + 1 : views.length);
  }

  const indexes = (cells: CellView[]) => cells.map((c) => views.indexOf(c)).filter((i) => i >= 0).sort((a, b) => a - b);

  const deleteSelected = () => {
    const idx = indexes(selection());
    if (!idx.length) return;
    const from = idx[0]!;
    const to = idx[idx.length - 1]! + 1;
    deleted.push({ index: from, cells: model.cells.slice(from, to).map((c) => c.toJSON() as CellJSON) });
    model.transact(() => {
      model.deleteCellRange(from, to);
      if (model.cells.length === 0) model.insertCell(0, { cell_type: "code", source: "", metadata: {}, outputs: [], execution_count: null });
    });
    const next = views[Math.min(from, views.length - 1)];
    if (next) select(next, false);
  };

  const undoDelete = () => {
    const last = deleted.pop();
    if (!last) return;
    const at = Math.min(last.index, views.length);
    model.insertCells(at, last.cells.map((c) => ({ ...c })) as never);
    const view = views[at];
    if (view) { select(view, false); reveal(view); }
  };

  const copy = (cut: boolean) => {
    const idx = indexes(selection());
    if (!idx.length) return;
    clipboard = idx.map((i) => fresh(model.cells[i]!.toJSON() as CellJSON));
    if (cut) deleteSelected();
  };

  const paste = (above: boolean) => {
    if (!clipboard.length) return;
    const at = active ? views.indexOf(active) + (above ? 0 : 1) : views.length;
    model.insertCells(at, clipboard.map((c) => structuredClone(c)) as never);
    const view = views[at + clipboard.length - 1];
    if (view) { select(view, false); reveal(view); }
  };

  function setType(type: string): void {
    const idx = indexes(selection()).filter((i) => model.cells[i]!.cell_type !== type);
    if (!idx.length) return;
    // The cells are replaced: keep the selection by place.
    const activeIndex = active ? views.indexOf(active) : -1;
    const anchorIndex = anchor ? views.indexOf(anchor) : activeIndex;
    model.transact(() => {
      for (const i of idx) {
        const old = model.cells[i]!.toJSON() as CellJSON;
        const json: CellJSON = { cell_type: type, id: old.id, source: old.source, metadata: old.metadata ?? {} };
        if (type === "code") Object.assign(json, { outputs: [], execution_count: null });
        else if (old.attachments) json.attachments = old.attachments;
        model.deleteCell(i);
        model.insertCell(i, json as never);
      }
    });
    active = views[activeIndex] ?? active;
    anchor = views[anchorIndex] ?? active;
    paint();
  }

  // -- execution ------------------------------------------------------------------------

  const call = async (name: string, args: Record<string, unknown> = {}) => {
    try {
      return await client.call<Record<string, unknown>>(name, { project_id: projectId, path, ...args });
    } catch (err) {
      toast((err as Error).message, "error");
      return null;
    }
  };

  const execute = async (cells: CellView[]) => {
    const ids = cells.filter((c) => c.type === "code").map((c) => c.id);
    if (!ids.length) return;
    // The server reads each cell's source from its document: let our last keystrokes land first.
    await shared.flushed();
    await call("kernel.execute", { cell_ids: ids });
  };

  async function run(cells: CellView[], then: "next" | "stay" | "insert"): Promise<void> {
    for (const c of cells) if (c.type === "markdown") c.blur(true);
    const last = cells[cells.length - 1];
    if (last) {
      const i = views.indexOf(last);
      if (then === "next") {
        if (i === views.length - 1) { insertAt(i + 1); editActive(); }
        else { select(views[i + 1]!, false); reveal(views[i + 1]!); setMode("command"); }
      } else if (then === "insert") { insertAt(i + 1); editActive(); }
      else { last.blur(false); setMode("command"); }
    }
    await execute(cells);
  }

  const runSelected = (then: "next" | "stay" | "insert") => run(selection(), then);

  async function runAll(which: "all" | "above" | "below"): Promise<void> {
    const i = active ? views.indexOf(active) : 0;
    const cells = which === "all" ? views : which === "above" ? views.slice(0, i) : views.slice(i);
    for (const c of cells) if (c.type === "markdown") c.blur(true);
    await execute(cells);
  }

  async function interrupt(): Promise<void> {
    await call("kernel.interrupt");
  }

  async function restart(thenRunAll: boolean): Promise<void> {
    const ok = await confirm(thenRunAll ? "Restart the kernel and run all cells?" : "Restart the kernel?", "The kernel's variables are lost for everyone in this notebook.", "Restart");
    list.focus({ preventScroll: true });
    if (!ok) return;
    const done = await call("kernel.restart");
    if (done && thenRunAll) await runAll("all");
  }

  function clearOutputs(all: boolean): void {
    const cells = all ? model.cells : selection().map((v) => v.cell);
    model.transact(() => {
      for (const c of cells) {
        if (c.cell_type !== "code") continue;
        const outs = c.ymodel.get("outputs") as Y.Array<unknown> | undefined;
        if (outs?.length) outs.delete(0, outs.length);
        if (c.ymodel.get("execution_count") != null) c.ymodel.set("execution_count", null);
      }
    });
  }

  // -- the kernel -----------------------------------------------------------------------

  const renderKernel = () => {
    const status = kernelRow.status ?? (kernelMap.get("status") as string | undefined) ?? "stopped";
    const name = kernelRow.kernel_name ?? (kernelMap.get("name") as string | undefined) ?? ((model.getMetadata("kernelspec") as { display_name?: string; name?: string } | undefined)?.display_name ?? "python3");
    const wanted = (model.getMetadata("kernelspec") as { name?: string; display_name?: string } | undefined);
    const chosen = wanted?.name || (kernelMap.get("name") as string | undefined) || "python3";
    const offered = specs.some((s) => s.name === chosen) ? specs : [...specs, { name: chosen, display_name: specs.length ? `${wanted?.display_name || chosen} (not on this server)` : wanted?.display_name || chosen }];
    if (kernelPicker.dataset.options !== JSON.stringify(offered)) {
      kernelPicker.dataset.options = JSON.stringify(offered);
      replace(kernelPicker, offered.map((s) => h("option", { value: s.name }, s.display_name)));
    }
    kernelPicker.value = chosen;
    kernelPicker.disabled = readOnly;
    kernelPicker.title = `The running kernel: ${name}`;
    kernelBadge.className = `kernel-badge badge badge-kernel-${status}`;
    kernelBadge.dataset.status = status;
    replace(kernelBadge, h("span", { class: "badge-dot" }), status === "stopped" ? "no kernel" : status);
  };
  const feed: Feed = liveRows(client, { kernels: [{ project_id: projectId, path, status: null, kernel_name: null, updated: null }] }, (r) => String(r.path), (rows) => {
    kernelRow = (rows.get(path) ?? {}) as typeof kernelRow;
    renderKernel();
  });

  const loadSpecs = async () => {
    try {
      const answer = await client.call<{ kernelspecs: { name: string; display_name: string }[] }>("kernel.specs", { project_id: projectId });
      specs = answer.kernelspecs;
    } catch { specs = []; }
    if (!destroyed) renderKernel();
  };
  void loadSpecs();
  async function pickKernel(name: string): Promise<void> {
    const current = (model.getMetadata("kernelspec") as { name?: string } | undefined)?.name;
    if (!name || name === current) return;
    const label = specs.find((s) => s.name === name)?.display_name ?? name;
    const ok = await confirm(`Change the kernel to ${label}?`, "The kernel restarts as the new one: its variables are lost for everyone in this notebook.", "Change kernel");
    if (!ok) { renderKernel(); return; }
    await shared.flushed();
    await call("kernel.restart", { kernel_name: name });
    renderKernel();
  }

  // -- who ran what (the `executions` table) -------------------------------------------

  let runs: RunRecord[] = [];
  const lastRun = new Map<string, RunRecord>();
  const toggleRuns = () => { runsPanel.hidden = !runsPanel.hidden; if (!runsPanel.hidden) renderRuns(); };
  const renderRuns = () => {
    if (runsPanel.hidden) return;
    const shown = runs.slice(-200).reverse();
    let session = "";
    const items: HTMLElement[] = [];
    for (const r of shown) {
      if (r.session && r.session !== session) {
        if (session) items.push(h("li", { class: "nb-runs-session muted small" }, "earlier kernel session"));
        session = r.session;
      }
      const index = placeOf(r.cell_id) ?? -1;
      const first = r.source.split("\n", 1)[0] ?? "";
      items.push(h("li", {},
        h("button", {
          class: `nb-run nb-run-${r.status}`, "data-testid": "run-entry", "data-cell-id": r.cell_id,
          title: r.source || r.cell_id,
          onclick: () => { const v = views[index]; if (v) { select(v, false); reveal(v); setMode("command"); } },
        },
        h("span", { class: "nb-run-who" }, r.name || "someone"),
        h("span", { class: `nb-run-status badge` }, r.status),
        h("span", { class: "nb-run-when muted small" }, relativeTime(r.finished ?? r.requested)),
        h("span", { class: "nb-run-cell muted small" }, index >= 0 ? `cell ${index + 1}${r.execution_count != null ? ` [${r.execution_count}]` : ""}` : "deleted cell"),
        first ? h("code", { class: "nb-run-src" }, first.slice(0, 80)) : null)));
    }
    replace(runsList, items.length ? items : [h("li", { class: "muted small nb-runs-empty" }, "Nothing has run in this notebook yet.")]);
  };
  const runsFeed: Feed = liveRows(client, { executions: [{ execution_id: null, seq: null, project_id: projectId, path, cell_id: null, name: null, account_id: null, status: null, session: null, source: null, error: null, execution_count: null, requested: null, finished: null }] }, (r) => String(r.execution_id), (rows) => {
    runs = ([...rows.values()] as unknown as RunRecord[]).sort((a, b) => a.seq - b.seq);
    const before = new Map(lastRun);
    lastRun.clear();
    for (const r of runs) lastRun.set(r.cell_id, r);
    // Only the cells whose newest run changed are rendered again.
    for (const v of cells.mounted) if (before.get(v.id) !== lastRun.get(v.id)) v.renderRunBy();
    renderRuns();
  });
  // "2 min ago" moves on.
  const ageTimer = window.setInterval(() => { for (const v of cells.mounted) v.renderRunBy(); renderRuns(); }, 30_000);

  // -- my role ----------------------------------------------------------------------------

  const setReadOnly = (value: boolean) => {
    if (value === readOnly) return;
    readOnly = value;
    tools.hidden = value;
    viewOnly.hidden = !value;
    empty.querySelector(".btn-group")?.toggleAttribute("hidden", value);
    list.dataset.readonly = String(value);
    for (const v of cells.mounted) v.resetEditor();
    renderKernel();
  };
  const roleFeed: Feed = liveRows(client, { collaborators: [{ project_id: projectId, account_id: session().account.account_id, role: null }] }, (r) => String(r.account_id), (rows) => {
    const mine = rows.get(session().account.account_id);
    setReadOnly(mine?.role === "viewer");
  });

  // -- the keyboard ---------------------------------------------------------------------

  const double = (key: string) => {
    const now = performance.now();
    const hit = lastKey.key === key && now - lastKey.at < DOUBLE_PRESS_MS;
    lastKey = hit ? { key: "", at: 0 } : { key, at: now };
    return hit;
  };

  list.addEventListener("keydown", (e) => {
    const target = e.target as HTMLElement;
    if (target !== list) return; // editors, prompts and buttons keep their keys
    const k = e.key;
    if (k !== lastKey.key && k !== "Shift") lastKey = { key: "", at: 0 };
    const plain = !e.ctrlKey && !e.metaKey && !e.altKey;
    let handled = true;
    const looking = ["ArrowUp", "ArrowDown", "j", "J", "k", "K", "Enter", "Escape", "c"].includes(k) && !(k === "Enter" && (e.shiftKey || e.ctrlKey || e.metaKey || e.altKey));
    if (readOnly && !looking) handled = false;
    else if (k === "Enter" && e.shiftKey) void runSelected("next");
    else if (k === "Enter" && (e.ctrlKey || e.metaKey)) void runSelected("stay");
    else if (k === "Enter" && e.altKey) void runSelected("insert");
    else if (k === "Enter") editActive();
    else if (!plain) handled = false;
    else if (k === "ArrowUp" || k === "k" || k === "K") move(-1, e.shiftKey);
    else if (k === "ArrowDown" || k === "j" || k === "J") move(1, e.shiftKey);
    else if (k === "a") insertAt(active ? views.indexOf(active) : 0);
    else if (k === "b") insertBelow();
    else if (k === "d") { if (double("d")) deleteSelected(); }
    else if (k === "z") undoDelete();
    else if (k === "m") setType("markdown");
    else if (k === "y") setType("code");
    else if (k === "r") setType("raw");
    else if (k === "c") copy(false);
    else if (k === "x") copy(true);
    else if (k === "V" || (k === "v" && e.shiftKey)) paste(true);
    else if (k === "v") paste(false);
    else if (k === "i") { if (double("i")) void interrupt(); }
    else if (k === "0") { if (double("0")) void restart(false); }
    else if (k === "Escape") { anchor = active; paint(); }
    else handled = false;
    if (handled) e.preventDefault();
  });

  // -- start ----------------------------------------------------------------------------

  void (async () => {
    const [python, markdown] = await Promise.all([
      import("@codemirror/lang-python").then((m) => m.python()),
      import("@codemirror/lang-markdown").then((m) => m.markdown()),
      shared.ready,
    ]);
    if (destroyed) return;
    languages = { python, markdown };
    applyDelta([{ insert: model.cells }]);
    cells.update();
    model.changed.connect(onChanged);
    ycells.observeDeep(onCells);
    kernelMap.observeDeep(onKernel);
    model.metadataChanged.connect(renderKernel);
    renderKernel();
    const onSync = (synced: boolean) => { if (synced) { empty.hidden = views.length > 0; renderKernel(); } };
    shared.provider.on("sync", onSync);
    if (views[0]) select(views[0], false);
    list.focus({ preventScroll: true });
  })();

  return {
    destroy: () => {
      destroyed = true;
      feed.cancel();
      runsFeed.cancel();
      roleFeed.cancel();
      clearInterval(ageTimer);
      stopPresence();
      shared.provider.awareness.off("change", track);
      cells.destroy();
      cursors.destroy();
      model.changed.disconnect(onChanged);
      ycells.unobserveDeep(onCells);
      kernelMap.unobserveDeep(onKernel);
      model.metadataChanged.disconnect(renderKernel);
      for (const v of views) v.destroy();
      shared.destroy();
      model.dispose();
    },
  };
}
