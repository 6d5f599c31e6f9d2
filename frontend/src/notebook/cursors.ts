// Collaborators' cursors in the cells: one awareness listener for the notebook tells the
// editors of the cells a cursor left and entered, instead of every mounted editor hearing
// (and redrawing for) every cursor move anywhere in the notebook.

import type { Awareness } from "y-protocols/awareness";
import * as Y from "yjs";

type Listener = (change: { added: number[]; updated: number[]; removed: number[] }, origin: unknown) => void;
type Cursor = { anchor?: unknown; head?: unknown } | null | undefined;

/** What y-codemirror.next's remote selections use of an awareness. */
export interface CellAwareness {
  readonly doc: Y.Doc;
  getStates(): Map<number, Record<string, unknown>>;
  getLocalState(): Record<string, unknown> | null;
  setLocalStateField(field: string, value: unknown): void;
  on(name: "change", fn: Listener): void;
  off(name: "change", fn: Listener): void;
}

export class CursorRouter {
  /** The Y.Text each remote client's cursor is in, as last seen. */
  private readonly at = new Map<number, Y.Text>();
  private readonly listeners = new Map<Y.Text, Set<Listener>>();

  constructor(private readonly awareness: Awareness) {
    awareness.on("change", this.route);
  }

  /** The awareness an editor of `text` is given: it hears of the cursors in `text` only. */
  forText(text: Y.Text): CellAwareness {
    const real = this.awareness;
    const listeners = this.listeners;
    const at = this.at;
    return {
      doc: real.doc,
      getStates: () => real.getStates() as Map<number, Record<string, unknown>>,
      getLocalState: () => real.getLocalState(),
      setLocalStateField: (field, value) => real.setLocalStateField(field, value),
      on: (_name, fn) => {
        let set = listeners.get(text);
        if (!set) listeners.set(text, (set = new Set()));
        set.add(fn);
        // A new editor draws the cursors already in its cell (it has no other update yet).
        const here = [...at].filter(([, t]) => t === text).map(([id]) => id);
        if (here.length) queueMicrotask(() => { if (set.has(fn)) fn({ added: [], updated: here, removed: [] }, null); });
      },
      off: (_name, fn) => {
        const set = listeners.get(text);
        set?.delete(fn);
        if (set && !set.size) listeners.delete(text);
      },
    };
  }

  private route = ({ added, updated, removed }: { added: number[]; updated: number[]; removed: number[] }, origin: unknown): void => {
    const own = this.awareness.clientID;
    const touched = new Map<Y.Text, number[]>();
    const note = (text: Y.Text | undefined, id: number) => {
      if (!text) return;
      const ids = touched.get(text);
      if (ids) ids.push(id);
      else touched.set(text, [id]);
    };
    const states = this.awareness.getStates();
    for (const id of [...added, ...updated, ...removed]) {
      if (id === own) continue;
      const before = this.at.get(id);
      const cursor = (states.get(id) as { cursor?: Cursor } | undefined)?.cursor;
      // A cursor in content that has not arrived yet still counts where it was.
      const now = cursor?.head ? this.textOf(cursor) ?? before : undefined;
      if (now) this.at.set(id, now);
      else this.at.delete(id);
      note(before, id);
      if (now !== before) note(now, id);
    }
    for (const [text, ids] of touched) {
      for (const fn of this.listeners.get(text) ?? []) fn({ added: [], updated: ids, removed: [] }, origin);
    }
  };

  private textOf(cursor: Cursor): Y.Text | undefined {
    if (!cursor?.head) return undefined;
    try {
      const pos = Y.createAbsolutePositionFromRelativePosition(cursor.head as Y.RelativePosition, this.awareness.doc);
      return pos?.type instanceof Y.Text ? pos.type : undefined;
    } catch {
      return undefined; // a position naming content this document does not have (yet)
    }
  }

  destroy(): void {
    this.awareness.off("change", this.route);
    this.listeners.clear();
    this.at.clear();
  }
}
