// History of a text document: a slider over its versions (doc.history), the text as of a
// version (read-only), a line diff against the live text, and restore (doc.restore).

import type * as Y from "yjs";
import { ApiError } from "../api/ws";
import { session } from "../session";
import { h, icon, relativeTime, replace, toast } from "../ui/dom";
import type { DocView } from "./open";

interface Version {
  version: number;
  time: string;
  authors: { account_id: string; name: string }[];
  updates: number;
}

export function openHistory(host: HTMLElement, projectId: string, path: string, live: Y.Text, close: () => void): DocView {
  const { client } = session();
  const slider = h("input", { type: "range", class: "slider", min: 0, max: 0, value: 0, "aria-label": "Version", "data-testid": "history-slider" });
  const label = h("span", { class: "history-label", "aria-live": "polite" });
  const body = h("pre", { class: "history-body", "data-testid": "history-content", tabindex: 0 });
  const modeDiff = h("input", { type: "checkbox", id: "history-diff" });
  const restore = h("button", { class: "btn btn-primary btn-sm", "data-testid": "history-restore" }, "Restore this version");
  let versions: Version[] = [];
  let content = "";
  let destroyed = false;

  const panel = h("div", { class: "history", role: "region", "aria-label": "History" },
    h("div", { class: "history-bar" },
      h("span", { class: "history-title" }, icon("history", 14), "History"),
      slider, label,
      h("label", { class: "check", for: "history-diff" }, modeDiff, "Diff against now"),
      restore,
      h("button", { class: "btn btn-icon btn-sm", "aria-label": "Close history", onclick: close }, icon("x", 14))),
    body);
  replace(host, panel);

  const render = () => {
    if (modeDiff.checked) replace(body, ...diffLines(content, live.toString()));
    else body.textContent = content;
  };
  const show = async () => {
    const v = versions[versions.length - 1 - Number(slider.value)];
    if (!v) return;
    const who = v.authors.map((a) => a.name).join(", ") || "server";
    label.textContent = `${relativeTime(v.time)} · ${who}`;
    const res = await client.call<{ content: string }>("doc.version", { project_id: projectId, path, version: v.version });
    if (destroyed) return;
    content = String(res.content);
    render();
  };
  slider.addEventListener("input", () => void show());
  modeDiff.addEventListener("change", render);
  restore.addEventListener("click", async () => {
    const v = versions[versions.length - 1 - Number(slider.value)];
    if (!v) return;
    try {
      await client.call("doc.restore", { project_id: projectId, path, version: v.version });
      toast("Version restored");
      close();
    } catch (err) {
      toast(err instanceof ApiError ? err.message : String(err), "error");
    }
  });
  void (async () => {
    const res = await client.call<{ versions: Version[] }>("doc.history", { project_id: projectId, path, limit: 1000 });
    versions = res.versions;
    if (versions.length === 0) {
      label.textContent = "No saved versions yet";
      return;
    }
    slider.max = String(versions.length - 1);
    slider.value = String(versions.length - 1);
    await show();
    slider.focus();
  })();
  return { destroy: () => { destroyed = true; } };
}

/** A line diff (longest common subsequence), rendered as added / removed / kept lines. */
/** A text's lines: a final newline ends the last line, it does not start an empty one. */
function lines(text: string): string[] {
  if (text === "") return [];
  return (text.endsWith("\n") ? text.slice(0, -1) : text).split("\n");
}

export function diffLines(before: string, after: string): HTMLElement[] {
  const a = lines(before);
  const b = lines(after);
  if (a.length * b.length > 4_000_000) return [h("span", null, "Too large to compare line by line.")];
  const dp: Uint32Array[] = Array.from({ length: a.length + 1 }, () => new Uint32Array(b.length + 1));
  for (let i = a.length - 1; i >= 0; i--)
    for (let j = b.length - 1; j >= 0; j--) dp[i][j] = a[i] === b[j] ? dp[i + 1][j + 1] + 1 : Math.max(dp[i + 1][j], dp[i][j + 1]);
  const out: HTMLElement[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    if (i < a.length && j < b.length && a[i] === b[j]) { out.push(h("span", { class: "diff-same" }, `  ${a[i]}\n`)); i++; j++; }
    else if (j < b.length && (i >= a.length || dp[i][j + 1] >= dp[i + 1][j])) { out.push(h("span", { class: "diff-add" }, `+ ${b[j]}\n`)); j++; }
    else { out.push(h("span", { class: "diff-del" }, `- ${a[i]}\n`)); i++; }
  }
  const endsBefore = before === "" || before.endsWith("\n");
  const endsAfter = after === "" || after.endsWith("\n");
  if (endsBefore !== endsAfter)
    out.push(h("span", { class: "diff-note muted" }, endsAfter ? "(a newline was added at the end)\n" : "(no newline at the end now)\n"));
  return out;
}
