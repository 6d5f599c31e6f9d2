// Markdown preview: marked, then DOMPurify; relative images load from the project's raw files,
// `attachment:` images (notebook cells) from the cell's attachments.

import { marked } from "marked";
import { rawUrl } from "../api/http";
import { sanitize } from "../ui/sanitize";

/** A notebook cell's attachments: file name → MIME type → base64 data. */
export type Attachments = Record<string, Record<string, string>>;

export function renderMarkdown(source: string, projectId: string, path: string, attachments?: Attachments): DocumentFragment {
  const tpl = document.createElement("template");
  tpl.content.append(sanitize(marked.parse(source, { async: false }) as string));
  const dir = path.includes("/") ? path.slice(0, path.lastIndexOf("/") + 1) : "";
  for (const img of tpl.content.querySelectorAll("img")) {
    const src = img.getAttribute("src") ?? "";
    if (src.startsWith("attachment:")) {
      const bundle = attachments?.[decodeURIComponent(src.slice("attachment:".length))];
      const mime = bundle && Object.keys(bundle).find((m) => m.startsWith("image/"));
      if (mime) img.src = `data:${mime};base64,${String(bundle[mime]).replace(/\s/g, "")}`;
      else img.removeAttribute("src");
    } else if (src && !/^[a-z]+:|^\/\//i.test(src)) img.src = rawUrl(projectId, normalize(dir + src));
  }
  return tpl.content;
}

function normalize(p: string): string {
  const out: string[] = [];
  for (const part of p.split("/")) {
    if (part === "..") out.pop();
    else if (part && part !== ".") out.push(part);
  }
  return out.join("/");
}
