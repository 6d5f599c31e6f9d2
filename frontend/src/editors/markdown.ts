// Markdown preview: marked, then DOMPurify; relative images load from the project's raw files.

import DOMPurify from "dompurify";
import { marked } from "marked";
import { rawUrl } from "../api/http";

export function renderMarkdown(source: string, projectId: string, path: string): DocumentFragment {
  const html = DOMPurify.sanitize(marked.parse(source, { async: false }) as string);
  const tpl = document.createElement("template");
  tpl.innerHTML = html;
  const dir = path.includes("/") ? path.slice(0, path.lastIndexOf("/") + 1) : "";
  for (const img of tpl.content.querySelectorAll("img")) {
    const src = img.getAttribute("src") ?? "";
    if (src && !/^[a-z]+:|^\/\//i.test(src)) img.src = rawUrl(projectId, normalize(dir + src));
  }
  for (const a of tpl.content.querySelectorAll("a")) {
    a.target = "_blank";
    a.rel = "noopener noreferrer";
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
