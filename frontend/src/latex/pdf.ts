// The PDF preview: pdf.js, loaded with this module and never before, renders a build's PDF
// into one canvas per page, the pages in view first. A new PDF replaces the old one only
// once its visible pages are drawn, at the same scroll position, so a rebuild neither
// flickers nor jumps. Points are PDF points from a page's top left, as SyncTeX gives them.

import { getDocument, GlobalWorkerOptions, type PDFDocumentProxy, type PDFPageProxy, type RenderTask } from "pdfjs-dist";
import { h, replace } from "../ui/dom";

// The worker is one of our own assets (build.mjs copies it, hashed, and names it here).
GlobalWorkerOptions.workerSrc = PDF_WORKER_URL;

export interface PdfPoint {
  page: number;
  x: number;
  y: number;
}

/** A SyncTeX box: `y` is its baseline, `height` how far it reaches above. */
export interface PdfBox extends PdfPoint {
  width: number;
  height: number;
}

const GAP = 12; // px between pages, and around them
const ZOOMS = [0.5, 0.67, 0.8, 1, 1.25, 1.5, 2, 3];

interface Page {
  el: HTMLElement;
  canvas: HTMLCanvasElement;
  proxy: PDFPageProxy;
  width: number; // in points
  height: number;
  drawn: number; // the scale it was drawn at, 0 when not drawn
  task: RenderTask | null;
}

export class PdfPreview {
  /** The scroll container. */
  readonly el: HTMLElement;
  /** How many PDFs were shown: a test (and a reader) can tell a new one arrived. */
  shown = 0;
  private pagesEl = h("div", { class: "pdf-pages" });
  private pages: Page[] = [];
  private doc: PDFDocumentProxy | null = null;
  private etag: string | null = null;
  private zoom: number | "fit" = "fit";
  private scale = 1;
  private loading: Promise<void> = Promise.resolve();
  private wanted: string | null = null;
  private observer: IntersectionObserver;
  private resize: ResizeObserver;
  private resizeTimer: number | undefined;
  private pointListeners: ((p: PdfPoint) => void)[] = [];
  private zoomListeners: (() => void)[] = [];
  private destroyed = false;

  constructor() {
    this.el = h("div", {
      class: "pdf-view",
      tabindex: 0,
      role: "document",
      "aria-label": "PDF preview (double-click a spot to find its source line)",
      "data-testid": "pdf-view",
    }, this.pagesEl);
    this.observer = new IntersectionObserver((entries) => {
      for (const e of entries) {
        if (!e.isIntersecting) continue;
        const page = this.pages[Number((e.target as HTMLElement).dataset.page) - 1];
        if (page && page.el === e.target) void this.draw(page);
      }
    }, { root: this.el, rootMargin: "400px 0px" });
    let width = 0;
    this.resize = new ResizeObserver(() => {
      if (this.el.clientWidth === width) return;
      width = this.el.clientWidth;
      clearTimeout(this.resizeTimer);
      this.resizeTimer = window.setTimeout(() => { if (this.zoom === "fit") this.relayout(); }, 120);
    });
    this.resize.observe(this.el);
    // Double-click, or Ctrl/Cmd-click, as in Overleaf and the SyncTeX viewers.
    const pick = (e: MouseEvent) => {
      const pageEl = (e.target as HTMLElement).closest<HTMLElement>(".pdf-page");
      if (!pageEl) return;
      const r = pageEl.getBoundingClientRect();
      const point = { page: Number(pageEl.dataset.page), x: (e.clientX - r.left) / this.scale, y: (e.clientY - r.top) / this.scale };
      for (const fn of this.pointListeners) fn(point);
    };
    this.el.addEventListener("dblclick", pick);
    this.el.addEventListener("click", (e) => { if (e.ctrlKey || e.metaKey) pick(e); });
  }

  get hasPdf(): boolean {
    return this.doc !== null;
  }

  /** The zoom as a percentage of the PDF's own size. */
  get percent(): number {
    return Math.round(this.scale * 100 * (72 / 96));
  }

  get fitting(): boolean {
    return this.zoom === "fit";
  }

  onPoint(fn: (p: PdfPoint) => void): void {
    this.pointListeners.push(fn);
  }

  onZoom(fn: () => void): void {
    this.zoomListeners.push(fn);
  }

  /** Fetch the PDF at `url` if it changed (by its ETag) and show it. Calls made while
   * one runs coalesce into one more fetch, of the latest URL. */
  refresh(url: string): Promise<void> {
    const idle = this.wanted === null;
    this.wanted = url;
    if (idle) {
      this.loading = this.loading.then(async () => {
        while (this.wanted !== null && !this.destroyed) {
          const next = this.wanted;
          try {
            await this.load(next);
          } catch (err) {
            console.error("PDF preview", err);
          }
          if (this.wanted === next) this.wanted = null;
        }
      });
    }
    return this.loading;
  }

  private async load(url: string): Promise<void> {
    const res = await fetch(url, { credentials: "same-origin", headers: this.etag ? { "If-None-Match": this.etag } : {} });
    if (res.status === 304) return;
    if (res.status === 404) {
      this.clear();
      return;
    }
    if (!res.ok) throw new Error(`the PDF could not be fetched (${res.status})`);
    const data = new Uint8Array(await res.arrayBuffer());
    // No eval: the app's CSP has no 'unsafe-eval', so fonts are drawn without compiled glyphs.
    const doc = await getDocument({ data, isEvalSupported: false, enableXfa: false }).promise;
    if (this.destroyed) {
      void doc.destroy();
      return;
    }
    const proxies = await Promise.all(Array.from({ length: doc.numPages }, (_, i) => doc.getPage(i + 1)));
    const pages = proxies.map((proxy) => {
      const [x0, y0, x1, y1] = proxy.view;
      const canvas = h("canvas", { class: "pdf-canvas", "aria-hidden": "true" });
      const el = h("div", { class: "pdf-page", "data-page": proxy.pageNumber, "aria-label": `Page ${proxy.pageNumber}` }, canvas);
      return { el, canvas, proxy, width: x1 - x0, height: y1 - y0, drawn: 0, task: null };
    });
    this.scale = this.scaleFor(pages);
    for (const p of pages) this.size(p);
    // Draw what will be in view before swapping, so the old pages stay until then.
    await Promise.all(this.inView(pages, this.el.scrollTop).map((p) => this.draw(p)));
    if (this.destroyed) {
      void doc.destroy();
      return;
    }
    // Read now, not before drawing: the reader may have scrolled meanwhile.
    const top = this.el.scrollTop;
    const left = this.el.scrollLeft;
    const old = this.doc;
    for (const p of this.pages) { p.task?.cancel(); this.observer.unobserve(p.el); }
    this.pages = pages;
    this.doc = doc;
    this.etag = res.headers.get("ETag");
    replace(this.pagesEl, pages.map((p) => p.el));
    this.el.scrollTop = top;
    this.el.scrollLeft = left;
    for (const p of pages) this.observer.observe(p.el);
    this.shown++;
    this.el.dataset.shown = String(this.shown);
    this.el.dataset.pages = String(pages.length);
    void old?.destroy();
    for (const fn of this.zoomListeners) fn();
  }

  private clear(): void {
    for (const p of this.pages) { p.task?.cancel(); this.observer.unobserve(p.el); }
    this.pages = [];
    void this.doc?.destroy();
    this.doc = null;
    this.etag = null;
    replace(this.pagesEl);
  }

  setZoom(zoom: "in" | "out" | "fit"): void {
    if (zoom === "fit") this.zoom = "fit";
    else {
      const now = this.scale * (72 / 96);
      const next = zoom === "in" ? ZOOMS.find((z) => z > now + 0.01) : [...ZOOMS].reverse().find((z) => z < now - 0.01);
      this.zoom = next ?? now;
    }
    this.relayout();
  }

  /** Scroll so that the box is in view (a third from the top) and mark it for a moment. */
  scrollToBox(box: PdfBox): void {
    const page = this.pages[box.page - 1];
    if (!page) return;
    const y = (box.y - box.height) * this.scale;
    this.el.scrollTop = page.el.offsetTop + y - this.el.clientHeight / 3;
    const x = box.x * this.scale;
    if (x < this.el.scrollLeft || x > this.el.scrollLeft + this.el.clientWidth) this.el.scrollLeft = page.el.offsetLeft + x - GAP;
    this.el.querySelector(".pdf-mark")?.remove();
    page.el.append(h("div", {
      class: "pdf-mark",
      "data-testid": "pdf-mark",
      style: {
        left: `${box.x * this.scale - 3}px`,
        top: `${y - 2}px`,
        width: `${Math.max(box.width, 8) * this.scale + 6}px`,
        height: `${Math.max(box.height, 6) * this.scale + 4}px`,
      },
    }));
  }

  destroy(): void {
    this.destroyed = true;
    clearTimeout(this.resizeTimer);
    this.observer.disconnect();
    this.resize.disconnect();
    for (const p of this.pages) p.task?.cancel();
    void this.doc?.destroy();
  }

  // CSS pixels per PDF point: the zoom (96 px are 72 pt at 100 %), or the widest page
  // fitting the pane's width.
  private scaleFor(pages: Page[]): number {
    if (this.zoom !== "fit") return this.zoom * (96 / 72);
    const widest = Math.max(...pages.map((p) => p.width), 1);
    const room = this.el.clientWidth - 2 * GAP;
    return room > 50 ? room / widest : 1;
  }

  private size(page: Page): void {
    page.el.style.width = `${Math.floor(page.width * this.scale)}px`;
    page.el.style.height = `${Math.floor(page.height * this.scale)}px`;
  }

  private inView(pages: Page[], top: number): Page[] {
    const bottom = top + this.el.clientHeight;
    const out: Page[] = [];
    let y = GAP;
    for (const p of pages) {
      const height = Math.floor(p.height * this.scale);
      if (y < bottom && y + height > top) out.push(p);
      y += height + GAP;
    }
    return out;
  }

  private relayout(): void {
    if (!this.pages.length) return;
    const ratio = this.el.scrollTop / Math.max(1, this.el.scrollHeight);
    this.scale = this.scaleFor(this.pages);
    for (const p of this.pages) this.size(p);
    this.el.scrollTop = ratio * this.el.scrollHeight;
    this.el.querySelector(".pdf-mark")?.remove();
    for (const p of this.inView(this.pages, this.el.scrollTop)) void this.draw(p);
    for (const fn of this.zoomListeners) fn();
  }

  private async draw(page: Page): Promise<void> {
    const scale = this.scale;
    if (page.drawn === scale) return;
    page.task?.cancel();
    const dpr = window.devicePixelRatio || 1;
    const viewport = page.proxy.getViewport({ scale: scale * dpr });
    // Drawn into a canvas of its own, then swapped in: a page being redrawn stays visible.
    const canvas = h("canvas", { class: "pdf-canvas", "aria-hidden": "true" });
    canvas.width = Math.floor(viewport.width);
    canvas.height = Math.floor(viewport.height);
    const task = page.proxy.render({ canvas, viewport });
    page.task = task;
    try {
      await task.promise;
    } catch {
      return; // cancelled by a newer drawing
    }
    if (page.task !== task) return;
    page.task = null;
    page.drawn = scale;
    page.canvas.replaceWith(canvas);
    page.canvas = canvas;
  }
}
