// Which cells are mounted: those on screen at once, those within MARGIN px of it a few at
// a time, no others. The range is found by binary search on the cells' offsets, so a frame
// costs O(log n + mounted cells) however long the notebook is (an IntersectionObserver on
// every cell recomputed thousands of intersections after each layout).

import type { CellView } from "./cell";

// Cells this far (px) beyond the viewport are mounted ahead; further ones keep only their height.
const MARGIN = 1200;
// Mounting ahead of the viewport stops for the frame after this long (ms); it goes on in
// the next one. Cells on screen are always mounted at once.
const AHEAD_BUDGET_MS = 6;
// The notebook is scrolling if it scrolled this recently (ms): cells it shows meanwhile, and
// those mounted ahead at any time, show their code without an editor (cell.renderInput).
const SETTLE_MS = 120;
// Once it stopped, editors are made for them, nearest first, this long per frame (ms).
const UPGRADE_BUDGET_MS = 8;

export class CellWindow {
  private readonly live = new Set<CellView>();
  private frame = 0;
  private scrolledAt = -Infinity;
  private upgradeTimer = 0;
  private upgradeFrame = 0;
  private readonly resizes: ResizeObserver;

  /** `views` is the notebook's array of cells, in order (read, never changed, here);
   * `keep` says which cells stay mounted off screen (the one being edited). */
  constructor(
    private readonly scroller: HTMLElement,
    private readonly list: HTMLElement,
    private readonly views: readonly CellView[],
    private readonly keep: (view: CellView) => boolean,
  ) {
    scroller.addEventListener("scroll", this.onScroll, { passive: true });
    // The viewport's size, and the list's height (a cell grew or shrank, which moves the rest).
    this.resizes = new ResizeObserver(this.schedule);
    this.resizes.observe(scroller);
    this.resizes.observe(list);
  }

  /** The mounted cells (unordered). */
  get mounted(): Iterable<CellView> {
    return this.live;
  }

  /** Mount `view` now (it is about to be shown or focused); it leaves with the others. */
  mount(view: CellView): void {
    view.mount();
    this.live.add(view);
  }

  /** `view` left the notebook. */
  forget(view: CellView): void {
    this.live.delete(view);
  }

  private onScroll = (): void => {
    this.scrolledAt = performance.now();
    this.schedule();
  };

  schedule = (): void => {
    if (!this.frame) this.frame = requestAnimationFrame(this.update);
  };

  /** Mount and unmount for the current scroll position. Reads layout once, then writes. */
  update = (): void => {
    cancelAnimationFrame(this.frame);
    this.frame = 0;
    const views = this.views;
    if (!views.length || !this.list.isConnected) return;
    const top = this.scroller.scrollTop - this.list.offsetTop;
    const bottom = top + this.scroller.clientHeight;
    const from = top - MARGIN;
    const to = bottom + MARGIN;
    // The first cell whose bottom is below `from` (offsets are the list's: it is positioned).
    let lo = 0;
    let hi = views.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      const el = views[mid]!.el;
      if (el.offsetTop + el.offsetHeight <= from) lo = mid + 1;
      else hi = mid;
    }
    const onScreen: CellView[] = [];
    const ahead: [CellView, number][] = [];
    const wanted = new Set<CellView>();
    for (let i = lo; i < views.length; i++) {
      const view = views[i]!;
      const y = view.el.offsetTop;
      if (y >= to) break;
      wanted.add(view);
      if (view.mounted) continue;
      const end = y + view.el.offsetHeight;
      if (end > top && y < bottom) onScreen.push(view);
      else ahead.push([view, end <= top ? top - end : y - bottom]);
    }
    // Heights of the cells leaving, all read before anything is written.
    const leaving: [CellView, number][] = [];
    for (const view of this.live) {
      if (!wanted.has(view) && view.mounted && !this.keep(view)) leaving.push([view, view.el.offsetHeight]);
      else if (!view.mounted) this.live.delete(view);
    }
    for (const [view, height] of leaving) {
      view.unmount(height);
      if (!view.mounted) this.live.delete(view);
    }
    // Every cell's content is built off the page first, then all go on it together: the
    // page is laid out once for the frame's new editors, not once for each (cell.prepare).
    const scrolling = performance.now() - this.scrolledAt < SETTLE_MS;
    const made = [...onScreen];
    for (const view of onScreen) view.prepare(scrolling);
    ahead.sort((a, b) => a[1] - b[1]);
    const start = performance.now();
    for (const [view] of ahead) {
      if (performance.now() - start > AHEAD_BUDGET_MS) { this.schedule(); break; }
      view.prepare(true);
      made.push(view);
    }
    for (const view of made) {
      view.attach();
      this.live.add(view);
    }
    if (made.some((view) => view.needsEditor)) this.scheduleUpgrade();
  };

  private scheduleUpgrade(): void {
    if (this.upgradeTimer || this.upgradeFrame) return;
    const wait = Math.max(0, this.scrolledAt + SETTLE_MS - performance.now());
    this.upgradeTimer = window.setTimeout(() => {
      this.upgradeTimer = 0;
      this.upgradeFrame = requestAnimationFrame(this.upgrade);
    }, wait);
  }

  /** Editors for the mounted cells showing code without one, nearest the viewport first,
   * a frame's budget at a time, while the notebook does not scroll. */
  private upgrade = (): void => {
    this.upgradeFrame = 0;
    if (!this.list.isConnected) return;
    if (performance.now() - this.scrolledAt < SETTLE_MS) { this.scheduleUpgrade(); return; }
    const top = this.scroller.scrollTop - this.list.offsetTop;
    const bottom = top + this.scroller.clientHeight;
    const waiting: [CellView, number][] = [];
    for (const view of this.live) {
      if (!view.needsEditor) continue;
      const y = view.el.offsetTop;
      const end = y + view.el.offsetHeight;
      waiting.push([view, end <= top ? top - end : y >= bottom ? y - bottom : 0]);
    }
    waiting.sort((a, b) => a[1] - b[1]);
    const start = performance.now();
    for (const [i, [view]] of waiting.entries()) {
      if (i && performance.now() - start > UPGRADE_BUDGET_MS) {
        this.upgradeFrame = requestAnimationFrame(this.upgrade);
        return;
      }
      view.upgrade();
    }
  };

  destroy(): void {
    cancelAnimationFrame(this.frame);
    cancelAnimationFrame(this.upgradeFrame);
    clearTimeout(this.upgradeTimer);
    this.scroller.removeEventListener("scroll", this.onScroll);
    this.resizes.disconnect();
    this.live.clear();
  }
}
