// Notebooks open in the notebook view of part 2; until then, a read-only summary.

import { downloadUrl } from "../api/http";
import { h, replace } from "../ui/dom";
import type { DocView } from "./open";

export function openNotebook(host: HTMLElement, projectId: string, path: string): DocView {
  replace(host, h("div", { class: "empty" },
    h("h2", null, path),
    h("p", { class: "muted" }, "The notebook editor is not part of this release yet. Download the notebook, or run it from a terminal with jupyter nbconvert."),
    h("a", { class: "btn", href: downloadUrl(projectId, path), download: path.split("/").pop() }, "Download")));
  return { destroy: () => undefined };
}
