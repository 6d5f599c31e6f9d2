// A tiny DOM builder: h("button", {class: "btn", onclick}, "Save"). No virtual DOM: screens
// rebuild the parts a feed changed.

type Child = Node | string | number | null | undefined | false | Child[];
type Attrs = Record<string, unknown>;

export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs?: Attrs | null, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v as EventListener);
    else if (k === "class") el.className = String(v);
    else if (k === "style" && typeof v === "object") Object.assign(el.style, v);
    else if (k === "html") el.innerHTML = String(v);
    else if (k in el && typeof v !== "string") (el as unknown as Record<string, unknown>)[k] = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, children);
  return el;
}

export function append(el: Element | DocumentFragment, children: Child[]): void {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : String(c));
  }
}

export function replace(el: Element, ...children: Child[]): void {
  el.replaceChildren();
  append(el, children);
}

const ICONS: Record<string, string> = {
  plus: "M12 5v14M5 12h14",
  folder: "M3 7a2 2 0 0 1 2-2h4l2 2h8a2 2 0 0 1 2 2v8a2 2 0 0 1-2 2H5a2 2 0 0 1-2-2z",
  file: "M14 3H7a2 2 0 0 0-2 2v14a2 2 0 0 0 2 2h10a2 2 0 0 0 2-2V8zM14 3v5h5",
  terminal: "M4 17l6-5-6-5M12 19h8",
  notebook: "M5 4h12a2 2 0 0 1 2 2v12a2 2 0 0 1-2 2H5zM9 4v16",
  upload: "M12 16V4M6 10l6-6 6 6M4 20h16",
  download: "M12 4v12M6 10l6 6 6-6M4 20h16",
  trash: "M4 7h16M9 7V4h6v3M6 7l1 13h10l1-13",
  edit: "M4 20h4L19 9l-4-4L4 16zM13 7l4 4",
  x: "M6 6l12 12M18 6L6 18",
  play: "M7 5l12 7-12 7z",
  stop: "M6 6h12v12H6z",
  restart: "M4 12a8 8 0 1 0 3-6.2M4 4v5h5",
  history: "M3 12a9 9 0 1 0 3-6.7M3 4v5h5M12 7v5l3 3",
  users: "M16 20v-1a4 4 0 0 0-4-4H7a4 4 0 0 0-4 4v1M9.5 11a4 4 0 1 0 0-8 4 4 0 0 0 0 8zM21 20v-1a4 4 0 0 0-3-3.9M16 3.1a4 4 0 0 1 0 7.8",
  sun: "M12 3v2M12 19v2M3 12h2M19 12h2M5.6 5.6l1.4 1.4M17 17l1.4 1.4M5.6 18.4 7 17M17 7l1.4-1.4M12 8a4 4 0 1 0 0 8 4 4 0 0 0 0-8z",
  moon: "M20 14.5A8 8 0 0 1 9.5 4 8 8 0 1 0 20 14.5z",
  chevron: "M9 6l6 6-6 6",
  key: "M15 7a4 4 0 1 1-3.9 5H3v4h3v-2h2v2h3.1A4 4 0 0 1 15 7z",
  eye: "M2 12s4-7 10-7 10 7 10 7-4 7-10 7S2 12 2 12zM12 9a3 3 0 1 0 0 6 3 3 0 0 0 0-6z",
  logout: "M15 4h4v16h-4M10 8l-4 4 4 4M6 12h11",
  image: "M4 5h16v14H4zM4 16l5-5 4 4 3-3 4 4M15 9h.01",
  more: "M5 12h.01M12 12h.01M19 12h.01",
  minus: "M5 12h14",
  check: "M5 12.5l4.5 4.5L19 7",
  alert: "M12 3a9 9 0 1 0 0 18 9 9 0 0 0 0-18zM12 7.5v5.5M12 16.5h.01",
  warning: "M12 3.5 2.5 20h19zM12 9.5v4.5M12 17h.01",
  box: "M3 7h13v10H3zM16 12h5M19 10l2 2-2 2",
  locate: "M12 2.5v4M12 17.5v4M2.5 12h4M17.5 12h4M12 7a5 5 0 1 0 0 10 5 5 0 0 0 0-10z",
  fit: "M4 9V4h5M20 9V4h-5M4 15v5h5M20 15v5h-5",
  tex: "M14 3H7a2 2 0 0 0-2 2v14a2 2 0 0 0 2 2h10a2 2 0 0 0 2-2V8zM14 3v5h5M8.5 12h5M11 12v6",
};

export function icon(name: string, size = 16): SVGSVGElement {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("width", String(size));
  svg.setAttribute("height", String(size));
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("class", "icon");
  const path = document.createElementNS(ns, "path");
  path.setAttribute("d", ICONS[name] ?? ICONS.file);
  svg.append(path);
  return svg;
}

export function toast(message: string, kind: "info" | "error" = "info", action?: { label: string; run: () => void }): void {
  let host = document.getElementById("toasts");
  if (!host) {
    host = h("div", { id: "toasts", role: "status", "aria-live": "polite" });
    document.body.append(host);
  }
  const el = h("div", { class: `toast toast-${kind}` }, message);
  if (action)
    el.append(
      h("button", { class: "btn btn-ghost btn-sm", onclick: () => { action.run(); el.remove(); } }, action.label),
    );
  host.append(el);
  setTimeout(() => el.remove(), action ? 8000 : 4000);
}

/** A modal dialog; resolves with the submitted value of its single field, or null. */
export function prompt(title: string, opts: { label: string; value?: string; submit?: string; type?: string; placeholder?: string }): Promise<string | null> {
  return new Promise((resolve) => {
    const input = h("input", { class: "input", type: opts.type ?? "text", value: opts.value ?? "", placeholder: opts.placeholder ?? "", "aria-label": opts.label, required: true });
    const dialog = h("dialog", { class: "dialog" },
      h("form", { method: "dialog", onsubmit: (e: Event) => { e.preventDefault(); done(input.value.trim() || null); } },
        h("h2", null, title),
        h("label", { class: "field" }, h("span", null, opts.label), input),
        h("div", { class: "dialog-actions" },
          h("button", { type: "button", class: "btn btn-ghost", onclick: () => done(null) }, "Cancel"),
          h("button", { type: "submit", class: "btn btn-primary" }, opts.submit ?? "Save"))));
    const done = (v: string | null) => { dialog.close(); dialog.remove(); resolve(v); };
    dialog.addEventListener("cancel", () => done(null));
    document.body.append(dialog);
    dialog.showModal();
    input.select();
  });
}

export function confirm(title: string, body: string, action = "Delete"): Promise<boolean> {
  return new Promise((resolve) => {
    const dialog = h("dialog", { class: "dialog", role: "alertdialog" },
      h("h2", null, title), h("p", { class: "muted" }, body),
      h("div", { class: "dialog-actions" },
        h("button", { class: "btn btn-ghost", onclick: () => done(false) }, "Cancel"),
        h("button", { class: "btn btn-danger", onclick: () => done(true), autofocus: true }, action)));
    const done = (v: boolean) => { dialog.close(); dialog.remove(); resolve(v); };
    dialog.addEventListener("cancel", () => done(false));
    document.body.append(dialog);
    dialog.showModal();
  });
}

export function relativeTime(iso: unknown): string {
  if (typeof iso !== "string") return "";
  const s = (Date.now() - Date.parse(iso)) / 1000;
  if (s < 45) return "just now";
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return new Date(iso).toLocaleDateString(undefined, { month: "short", day: "numeric", year: "numeric" });
}

export function formatBytes(n: unknown): string {
  if (typeof n !== "number") return "";
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

/** A colour per account, stable across sessions, for cursors and avatars. */
export function colorFor(id: string): string {
  let x = 0;
  for (const c of id) x = (x * 31 + c.charCodeAt(0)) >>> 0;
  const palette = ["#e5484d", "#f76b15", "#d6a00b", "#30a46c", "#12a594", "#0090ff", "#5b5bd6", "#8e4ec6", "#d6409f"];
  return palette[x % palette.length];
}

export function avatar(name: string, id: string): HTMLElement {
  const initials = name.split(/\s+/).filter(Boolean).slice(0, 2).map((w) => w[0]!.toUpperCase()).join("") || "?";
  return h("span", { class: "avatar", style: { background: colorFor(id) }, title: name }, initials);
}
