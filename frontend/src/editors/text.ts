// The text editor: CodeMirror 6 bound to the document's `source` Text by y-codemirror.next,
// with collaborators' cursors, search, line numbers, syntax by file type, and a markdown
// preview for .md files. Other views of a text file (LaTeX) add their extensions, toolbar
// controls and a pane beside the editor through TextOptions.

import { defaultKeymap, history as cmHistory, historyKeymap, indentWithTab } from "@codemirror/commands";
import { bracketMatching, indentOnInput, syntaxHighlighting } from "@codemirror/language";
import { highlightSelectionMatches, search, searchKeymap } from "@codemirror/search";
import { EditorState, type Extension } from "@codemirror/state";
import { drawSelection, EditorView, highlightActiveLine, highlightActiveLineGutter, keymap, lineNumbers } from "@codemirror/view";
import { yCollab } from "y-codemirror.next";
import * as Y from "yjs";
import { upload } from "../api/http";
import type { Row } from "../api/ws";
import { session } from "../session";
import { h, icon, replace, toast } from "../ui/dom";
import { editorTheme, highlight } from "./codemirror";
import { languageFor } from "./languages";
import type { DocView } from "./open";
import { watchPresence } from "./presence";
import { openShared } from "./yjs";

export interface TextOptions {
  /** Extensions after the editor's own (commands, diagnostics, a language of its own). */
  extensions?: Extension[];
  /** Controls for the toolbar, before History. */
  actions?: Node[];
  /** A pane beside the editor, in place of the markdown preview. */
  aside?: HTMLElement;
  /** A class for the document's root element. */
  kind?: string;
}

export interface TextView extends DocView {
  /** The shared text, and the editor once the document is loaded. */
  ytext: Y.Text;
  editor: Promise<EditorView>;
}

/** `a (my copy).txt`, or `a (my copy 2).txt`, … : a name no file in the project has. */
async function freeName(projectId: string, path: string): Promise<string> {
  const taken = new Set((await session().client.query<Row[]>({ files: [{ project_id: projectId, path: null }] })).map((r) => String(r.path)));
  for (let n = 1; ; n++) {
    const aside = path.replace(/(\.[^./]+)?$/, (ext) => ` (my copy${n > 1 ? ` ${n}` : ""})${ext}`);
    if (!taken.has(aside)) return aside;
  }
}

export function openText(host: HTMLElement, projectId: string, path: string, options: TextOptions = {}): TextView {
  const shared = openShared(projectId, path);
  const ytext = shared.doc.getText("source");
  const isMarkdown = !options.aside && /\.(md|markdown)$/i.test(path);
  const people = h("div", { class: "presence", "aria-label": "People in this document" });
  const banner = h("div", { class: "banner-host" });
  const editorEl = h("div", { class: "editor", "data-testid": "editor" });
  const preview = h("article", { class: "preview markdown", "aria-label": "Preview", hidden: !isMarkdown });
  const split = h("div", { class: `editor-split ${isMarkdown || options.aside ? "with-preview" : ""}` }, editorEl, options.aside ?? preview);
  let historyView: DocView | null = null;
  const historyHost = h("div", { class: "history-host" });
  const toolbar = h("div", { class: "doc-toolbar" },
    h("span", { class: "doc-path", title: path }, path),
    people,
    h("div", { class: "btn-group" },
      isMarkdown ? h("button", { class: "btn btn-ghost btn-sm", "aria-pressed": "true", onclick: (e: Event) => {
        const b = e.currentTarget as HTMLButtonElement;
        const on = b.getAttribute("aria-pressed") !== "true";
        b.setAttribute("aria-pressed", String(on));
        preview.hidden = !on;
        split.classList.toggle("with-preview", on);
      } }, icon("eye", 14), "Preview") : null,
      options.actions,
      h("button", { class: "btn btn-ghost btn-sm", "aria-label": "History", "data-testid": "history-button", onclick: async () => {
        if (historyView) { historyView.destroy(); historyView = null; replace(historyHost); return; }
        historyView = (await import("./history")).openHistory(historyHost, projectId, path, ytext, () => { historyView?.destroy(); historyView = null; replace(historyHost); });
      } }, icon("history", 14), "History")));
  replace(host, h("div", { class: `doc text-doc ${options.kind ?? ""}` }, toolbar, banner, historyHost, split));

  let view: EditorView | null = null;
  let destroyed = false;
  let opened: (v: EditorView) => void = () => undefined;
  const editor = new Promise<EditorView>((resolve) => { opened = resolve; });
  void (async () => {
    const [language] = await Promise.all([languageFor(path), shared.ready]);
    if (destroyed) return;
    view = new EditorView({
      parent: editorEl,
      state: EditorState.create({
        doc: ytext.toString(),
        extensions: [
          lineNumbers(), highlightActiveLineGutter(), highlightActiveLine(), drawSelection(), cmHistory(),
          indentOnInput(), bracketMatching(), highlightSelectionMatches(), search({ top: true }),
          keymap.of([...defaultKeymap, ...searchKeymap, ...historyKeymap, indentWithTab]),
          syntaxHighlighting(highlight), editorTheme, EditorView.lineWrapping, language,
          EditorView.contentAttributes.of({ "aria-label": `Editor for ${path}` }),
          yCollab(ytext, shared.provider.awareness),
          options.extensions ?? [],
        ],
      }),
    });
    view.focus();
    performance.mark("collab:editor");
    opened(view);
  })();

  watchPresence(shared, people);

  let renderTimer: number | undefined;
  const renderPreview = () => {
    clearTimeout(renderTimer);
    renderTimer = window.setTimeout(async () => {
      if (preview.hidden) return;
      const { renderMarkdown } = await import("./markdown");
      replace(preview, renderMarkdown(ytext.toString(), projectId, path));
    }, 120);
  };
  if (isMarkdown) {
    ytext.observe(renderPreview);
    void shared.ready.then(renderPreview);
  }

  shared.onMismatch(() => {
    replace(banner, h("div", { class: "banner banner-warn", role: "alert", "data-testid": "mismatch" },
      h("div", null,
        h("strong", null, "This copy no longer matches the server."),
        h("span", null, " The server's document was restored from an older backup. Your copy was not merged, so nothing is duplicated.")),
      h("div", { class: "btn-group" },
        h("button", { class: "btn btn-sm", onclick: async () => {
          const aside = await freeName(projectId, path);
          const dir = aside.includes("/") ? aside.slice(0, aside.lastIndexOf("/")) : "";
          await upload(projectId, dir, new File([ytext.toString()], aside.slice(aside.lastIndexOf("/") + 1)));
          toast(`Saved your copy as ${aside}`);
          await shared.discardLocal();
          location.reload();
        } }, "Save my copy aside"),
        h("button", { class: "btn btn-ghost btn-sm", onclick: async () => { await shared.discardLocal(); location.reload(); } }, "Use the server's copy"))));
  });

  return {
    ytext,
    editor,
    destroy: () => {
      destroyed = true;
      clearTimeout(renderTimer);
      historyView?.destroy();
      view?.destroy();
      shared.destroy();
    },
  };
}

export { Y };
