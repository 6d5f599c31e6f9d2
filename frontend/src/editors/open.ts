// Picks the view for a file by its name; heavy editors load only when first needed.

import { rawUrl } from "../api/http";
import { preload } from "../preload";
import { h, replace } from "../ui/dom";

export interface DocView {
  destroy(): void;
}

const IMAGE = /\.(png|jpe?g|gif|svg|webp|bmp|ico)$/i;
const BINARY = /\.(pdf|zip|gz|tar|whl|so|bin|exe|pkl|npy|npz|h5|parquet|sqlite|db|mp3|mp4|wav|ogg|woff2?|ttf)$/i;

const LANGUAGE_MODULES: [RegExp, string][] = [
  [/\.py$/i, "lang-python"],
  [/\.(md|markdown)$/i, "lang-markdown"],
  [/\.(json|ipynb)$/i, "lang-json"],
  [/\.ya?ml$/i, "lang-yaml"],
  [/\.(sh|bash|zsh)$/i, "mode/shell"],
  [/\.(tex|sty|cls|ltx)$/i, "mode/stex"],
];

/** True when the file opens in the plain text editor (editors/text.ts). */
export function startsText(path: string): boolean {
  return !/\.(term|ipynb|tex)$/i.test(path) && !IMAGE.test(path) && !BINARY.test(path);
}

/** Start loading the modules a file's view needs, all chunks at once. */
export function prefetch(path: string): void {
  if (path.endsWith(".term")) preload("editors/terminal");
  else if (path.endsWith(".ipynb")) {
    // The cells' languages too: the view imports them only once it runs.
    preload("notebook/view");
    preload("lang-python");
    preload("lang-markdown");
  }
  else if (!path.endsWith(".ipynb") && !IMAGE.test(path) && !BINARY.test(path)) {
    preload("editors/text");
    for (const [re, mod] of LANGUAGE_MODULES) if (re.test(path)) preload(mod);
    if (/\.(md|markdown)$/i.test(path)) preload("editors/markdown");
    if (/\.tex$/i.test(path)) { preload("latex/screen"); preload("latex/pdf"); }
  }
}

export function openDocument(host: HTMLElement, projectId: string, path: string): DocView {
  let inner: DocView | null = null;
  let destroyed = false;
  const load = async () => {
    prefetch(path);
    replace(host, h("div", { class: "loading" }, h("span", { class: "spinner" }), "Opening…"));
    if (IMAGE.test(path)) {
      replace(host, h("div", { class: "image-view" }, h("img", { src: rawUrl(projectId, path), alt: path })));
      return;
    }
    if (BINARY.test(path)) {
      replace(host, h("div", { class: "empty" }, h("h2", null, path), h("p", { class: "muted" }, "This file cannot be shown here; download it instead.")));
      return;
    }
    let view: DocView;
    if (path.endsWith(".term")) view = (await import("./terminal")).openTerminal(host, projectId, path);
    else if (path.endsWith(".ipynb")) view = (await import("../notebook/view")).openNotebook(host, projectId, path);
    else if (/\.tex$/i.test(path)) view = (await import("../latex/screen")).openLatex(host, projectId, path);
    else {
      const { openText } = await import("./text");
      performance.mark("collab:text-module");
      view = openText(host, projectId, path);
    }
    if (destroyed) view.destroy();
    else inner = view;
  };
  void load();
  return { destroy: () => { destroyed = true; inner?.destroy(); } };
}
