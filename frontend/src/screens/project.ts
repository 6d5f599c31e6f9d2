// One project: the live file tree (the `files` listings feed), tabs of open documents, and
// the document at /projects/{id}/files/{path}.

import { downloadUrl, upload } from "../api/http";
import { ApiError, type Feed, liveRows, type Row } from "../api/ws";
import { fileUrl, navigate } from "../router";
import { session } from "../session";
import { avatar, confirm, formatBytes, h, icon, prompt, replace, toast } from "../ui/dom";
import { shell } from "../ui/shell";
import { type DocView, openDocument } from "../editors/open";
import { ACCESS_LOST, DOC_RELOCATED, type DocRelocated } from "../editors/relocated";
import { lifecycleButtons, PROJECT_FIELDS, renameProject, stateBadge, viewOnlyBadge } from "./projects";
import { joinProject, type Online, onlineFeed, onlineLabel } from "./presence";
import { sharePanel } from "./share";

interface Entry {
  path: string;
  kind: "file" | "dir";
  size: number;
  modified: string;
}

function tabsKey(projectId: string) {
  return `collab:tabs:${projectId}`;
}

export class ProjectScreen {
  readonly el: HTMLElement;
  private files = new Map<string, Entry>();
  private expanded = new Set<string>([""]);
  private tree = h("div", { class: "tree", role: "tree", "aria-label": "Files" });
  private tabs = h("div", { class: "tabs", role: "tablist", "aria-label": "Open documents" });
  private pane = h("div", { class: "doc-pane" });
  private header = h("div", { class: "project-head" });
  private crumbTitle = h("a", { href: "#", class: "crumb-link" }, "…");
  private open: string[];
  private current: string | null = null;
  private view: DocView | null = null;
  private project: Row | null = null;
  private feeds: Feed[] = [];
  private members = new Map<string, Row>();
  private online: Online = new Map();
  private onlineEl = h("div", { class: "online-people", role: "list", "aria-label": "Online now" });
  private leave: () => void = () => undefined;
  private selectedDir = "";
  // A viewer sees everything live and changes nothing: the server refuses its writes, and
  // the page offers none (no new files, uploads, renames, deletes, starts or stops).
  private viewer = false;
  private fileActions: HTMLElement;
  private dropHint: HTMLElement;

  constructor(readonly projectId: string, path: string | null) {
    const { client } = session();
    this.open = JSON.parse(localStorage.getItem(tabsKey(projectId)) ?? "[]") as string[];
    const fileInput = h("input", { type: "file", multiple: true, class: "sr-only", tabindex: -1, "aria-hidden": "true", onchange: () => { void this.uploadFiles([...(fileInput.files ?? [])]); fileInput.value = ""; } });
    const sidebar = h("aside", { class: "sidebar", "aria-label": "Project files" },
      h("div", { class: "sidebar-head" },
        h("span", { class: "sidebar-title" }, "Files"),
        this.fileActions = h("div", { class: "btn-group" },
          h("button", { class: "btn btn-icon btn-sm", title: "New file", "aria-label": "New file", onclick: () => this.create("file") }, icon("file", 15)),
          h("button", { class: "btn btn-icon btn-sm", title: "New notebook", "aria-label": "New notebook", onclick: () => this.create("notebook") }, icon("notebook", 15)),
          h("button", { class: "btn btn-icon btn-sm", title: "New terminal", "aria-label": "New terminal", onclick: () => this.create("terminal") }, icon("terminal", 15)),
          h("button", { class: "btn btn-icon btn-sm", title: "New folder", "aria-label": "New folder", onclick: () => this.create("dir") }, icon("folder", 15)),
          h("button", { class: "btn btn-icon btn-sm", title: "Upload files", "aria-label": "Upload files", onclick: () => fileInput.click() }, icon("upload", 15)),
          fileInput)),
      this.tree,
      this.dropHint = h("p", { class: "drop-hint muted small" }, "Drop files here to upload"));
    sidebar.addEventListener("dragover", (e) => { e.preventDefault(); if (!this.viewer) sidebar.classList.add("dropping"); });
    sidebar.addEventListener("dragleave", () => sidebar.classList.remove("dropping"));
    sidebar.addEventListener("drop", (e) => {
      e.preventDefault();
      sidebar.classList.remove("dropping");
      if (!this.viewer) void this.uploadFiles([...(e.dataTransfer?.files ?? [])]);
    });
    const body = h("div", { class: "project" }, this.header, h("div", { class: "project-body" }, sidebar, h("section", { class: "workspace" }, this.tabs, this.pane)));
    this.crumbTitle.href = `/projects/${projectId}`;
    this.el = shell([h("a", { href: "/projects" }, "Projects"), this.crumbTitle], body);
    this.el.classList.add("shell-full");

    this.feeds.push(
      liveRows(client, { projects: [{ ...PROJECT_FIELDS, project_id: projectId }] }, (r) => String(r.project_id), (rows) => {
        const had = this.project !== null;
        this.project = rows.get(projectId) ?? null;
        if (had && !this.project) this.accessLost();
        this.renderHeader();
      }, (err) => this.refused(err)),
      liveRows(client, { files: [{ project_id: projectId, path: null, kind: null, size: null, modified: null }] }, (r) => String(r.path), (rows) => {
        this.files = new Map([...rows].map(([k, r]) => [k, r as unknown as Entry]));
        this.renderTree();
      }, (err) => this.refused(err)),
    );
    this.feeds.push(
      liveRows(client, { collaborators: [{ project_id: projectId, account_id: null, name: null, role: null }] }, (r) => String(r.account_id), (rows) => {
        this.members = rows;
        this.renderOnline();
        this.setViewer(rows.get(session().account.account_id)?.role === "viewer");
      }, () => undefined),
      onlineFeed(client, projectId, (online) => {
        this.online = online;
        this.renderOnline();
      }),
    );
    this.leave = joinProject(client, projectId);
    client.call("files.scan", { project_id: projectId }).catch((err) => this.refused(err));
    window.addEventListener(DOC_RELOCATED, this.onRelocated);
    window.addEventListener(ACCESS_LOST, this.onAccessLost);
    this.show(path);
  }

  /** The server closed an open document: its file was renamed or deleted (by anyone). */
  private onRelocated = (ev: Event): void => {
    const { projectId, path, to } = (ev as CustomEvent<DocRelocated>).detail;
    if (projectId !== this.projectId || !this.open.includes(path)) return;
    if (to === null) {
      this.closeTab(path);
      toast(`${path} was deleted`, "error");
      return;
    }
    this.open = this.open.map((p) => (p === path ? to : p));
    this.saveTabs();
    toast(`${path} was moved to ${to}`);
    if (this.current === path) navigate(fileUrl(this.projectId, to), true);
    else this.renderTabs();
  };

  private onAccessLost = (ev: Event): void => {
    if ((ev as CustomEvent<{ projectId: string }>).detail.projectId === this.projectId) this.accessLost();
  };

  /** Removed from the project (or it was deleted): close what is open and say so. */
  private accessLost(): void {
    this.view?.destroy();
    this.view = null;
    this.refused(new ApiError("forbidden", "no longer a member"));
  }

  private refused(err: ApiError): void {
    if (err.code === "forbidden") {
      this.crumbTitle.textContent = "No access";
      replace(this.el.querySelector("main")!, h("div", { class: "empty", "data-testid": "refused" },
        h("div", { class: "empty-icon" }, icon("key", 28)),
        h("h2", null, "You do not have access to this project"),
        h("p", { class: "muted" }, "It does not exist, or its owner has not added you."),
        h("a", { href: "/projects", class: "btn" }, "Back to your projects")));
    } else toast(err.message, "error");
  }

  update(path: string | null): void {
    this.show(path);
  }

  cleanup(): void {
    window.removeEventListener(DOC_RELOCATED, this.onRelocated);
    window.removeEventListener(ACCESS_LOST, this.onAccessLost);
    for (const f of this.feeds) f.cancel();
    this.leave();
    this.view?.destroy();
  }

  /** The role can change while the page is open (an owner makes a member a viewer). */
  private setViewer(viewer: boolean): void {
    if (viewer === this.viewer) return;
    this.viewer = viewer;
    this.el.dataset.viewer = String(viewer);
    this.fileActions.hidden = viewer;
    this.dropHint.hidden = viewer;
    this.renderHeader();
    this.renderTree();
    if (!this.current) this.show(null);
  }

  private renderHeader(): void {
    const p = this.project;
    if (!p) return;
    this.crumbTitle.textContent = String(p.title || "Untitled");
    document.title = `${p.title} · collab`;
    replace(this.header,
      h("div", { class: "project-title-row" },
        h("h1", { class: "project-name" }, String(p.title || "Untitled")),
        stateBadge(p),
        this.viewer ? viewOnlyBadge() : null,
        p.state_error ? h("span", { class: "muted small" }, String(p.state_error)) : null),
      h("div", { class: "btn-group" },
        this.onlineEl,
        this.viewer ? null : lifecycleButtons(p),
        this.viewer ? null : h("button", { class: "btn btn-ghost btn-sm", onclick: () => renameProject(p), "aria-label": "Rename project" }, icon("edit", 14), "Rename"),
        h("button", { class: "btn btn-sm", onclick: () => sharePanel(this.projectId, String(p.title)) }, icon("users", 14), this.viewer ? "People" : "Share")));
  }

  /** Avatars of the members online now (others first), each with a green dot. */
  private renderOnline(): void {
    const me = session().account.account_id;
    const ids = [...this.online.keys()].filter((id) => this.members.has(id)).sort((a, b) => (a === me ? 1 : 0) - (b === me ? 1 : 0));
    replace(this.onlineEl, ids.map((id) => {
      const name = String(this.members.get(id)?.name || "Unnamed");
      const label = `${name}${id === me ? " (you)" : ""}: ${onlineLabel(this.online.get(id)!)}`;
      return h("span", { class: "online-person", role: "listitem", "data-account": id, title: label, "aria-label": label },
        avatar(name, id), h("span", { class: "presence-dot", "aria-hidden": "true" }));
    }));
  }

  private renderTree(): void {
    const children = new Map<string, Entry[]>();
    for (const e of this.files.values()) {
      const parent = e.path.includes("/") ? e.path.slice(0, e.path.lastIndexOf("/")) : "";
      if (!children.has(parent)) children.set(parent, []);
      children.get(parent)!.push(e);
    }
    const rows: HTMLElement[] = [];
    const walk = (dir: string, depth: number) => {
      const list = (children.get(dir) ?? []).sort((a, b) => (a.kind === b.kind ? a.path.localeCompare(b.path) : a.kind === "dir" ? -1 : 1));
      for (const e of list) {
        const name = e.path.slice(e.path.lastIndexOf("/") + 1);
        const isDir = e.kind === "dir";
        const open = this.expanded.has(e.path);
        const label = isDir
          ? h("button", { class: "tree-label", "aria-expanded": String(open), onclick: () => { if (open) this.expanded.delete(e.path); else this.expanded.add(e.path); this.selectedDir = e.path; this.renderTree(); } },
              h("span", { class: `chev ${open ? "open" : ""}` }, icon("chevron", 12)), icon("folder", 15), h("span", { class: "tree-name" }, name))
          : h("a", { class: "tree-label", href: fileUrl(this.projectId, e.path), "aria-current": this.current === e.path ? "page" : null },
              h("span", { class: "chev" }), icon(fileIcon(e.path), 15), h("span", { class: "tree-name" }, name));
        // A LaTeX build's outputs (collab/latex): folded like any folder, and dimmed.
        const output = isDir && name === ".build";
        rows.push(h("div", { class: ["tree-row", this.current === e.path && "active", output && "build-output"].filter(Boolean).join(" "), role: "treeitem", "data-path": e.path, title: output ? "LaTeX build output" : null, style: { paddingLeft: `${8 + depth * 14}px` } },
          label,
          h("span", { class: "tree-meta muted" }, isDir ? "" : formatBytes(e.size)),
          h("span", { class: "tree-actions" },
            this.viewer ? null : h("button", { class: "btn btn-icon btn-xs", "aria-label": `Rename ${e.path}`, title: "Rename or move", onclick: () => this.rename(e.path) }, icon("edit", 13)),
            isDir ? null : h("a", { class: "btn btn-icon btn-xs", href: downloadUrl(this.projectId, e.path), download: name, "aria-label": `Download ${e.path}`, title: "Download" }, icon("download", 13)),
            this.viewer ? null : h("button", { class: "btn btn-icon btn-xs", "aria-label": `Delete ${e.path}`, title: "Delete", onclick: () => this.remove(e) }, icon("trash", 13)))));
        if (isDir && open) walk(e.path, depth + 1);
      }
    };
    walk("", 0);
    if (rows.length === 0) replace(this.tree, h("p", { class: "tree-empty muted small" }, this.viewer ? "No files yet." : "No files yet. Create one, or drop files here."));
    else replace(this.tree, ...rows);
  }

  private async create(kind: "file" | "dir" | "notebook" | "terminal"): Promise<void> {
    const { client } = session();
    const defaults = { file: "untitled.md", dir: "folder", notebook: "untitled.ipynb", terminal: "terminal.term" };
    const titles = { file: "New file", dir: "New folder", notebook: "New notebook", terminal: "New terminal" };
    let name = await prompt(titles[kind], { label: "Name", value: defaults[kind], submit: "Create" });
    if (!name) return;
    if (kind === "notebook" && !name.endsWith(".ipynb")) name += ".ipynb";
    if (kind === "terminal" && !name.endsWith(".term")) name += ".term";
    const path = this.selectedDir ? `${this.selectedDir}/${name}` : name;
    try {
      if (kind === "dir") {
        await client.call("files.mkdir", { project_id: this.projectId, path });
        this.expanded.add(path);
      } else if (kind === "terminal") navigate(fileUrl(this.projectId, path));
      else if (kind === "notebook") {
        // An empty file is not a notebook: start from a valid, empty nbformat 4 document.
        // files.create first: it refuses an existing name, which the upload would replace.
        const nb = { cells: [], metadata: {}, nbformat: 4, nbformat_minor: 5 };
        await client.call("files.create", { project_id: this.projectId, path });
        await upload(this.projectId, this.selectedDir, new File([JSON.stringify(nb, null, 1)], name));
        navigate(fileUrl(this.projectId, path));
      } else {
        await client.call("files.create", { project_id: this.projectId, path });
        navigate(fileUrl(this.projectId, path));
      }
    } catch (err) {
      toast(err instanceof ApiError ? err.message : String(err), "error");
    }
  }

  private async rename(path: string): Promise<void> {
    const to = await prompt("Rename or move", { label: "New path", value: path, submit: "Rename" });
    if (!to || to === path) return;
    try {
      await session().client.call("files.move", { project_id: this.projectId, path, to });
      this.open = this.open.map((p) => (p === path ? to : p.startsWith(path + "/") ? to + p.slice(path.length) : p));
      this.saveTabs();
      if (this.current === path) navigate(fileUrl(this.projectId, to), true);
      else this.renderTabs();
    } catch (err) {
      toast(err instanceof ApiError ? err.message : String(err), "error");
    }
  }

  private async remove(e: Entry): Promise<void> {
    const what = e.kind === "dir" ? "this folder and everything in it" : "this file";
    if (!(await confirm(`Delete ${e.path}?`, `This deletes ${what} from the project. Its history stays on the server.`))) return;
    try {
      await session().client.call("files.delete", { project_id: this.projectId, path: e.path });
      this.closeTab(e.path);
      toast(`Deleted ${e.path}`);
    } catch (err) {
      toast(err instanceof ApiError ? err.message : String(err), "error");
    }
  }

  private async uploadFiles(files: File[]): Promise<void> {
    for (const f of files) {
      try {
        await upload(this.projectId, this.selectedDir, f);
        toast(`Uploaded ${f.name}`);
      } catch (err) {
        toast(`${f.name}: ${err instanceof Error ? err.message : err}`, "error");
      }
    }
  }

  private saveTabs(): void {
    localStorage.setItem(tabsKey(this.projectId), JSON.stringify(this.open.slice(-20)));
  }

  private closeTab(path: string): void {
    const i = this.open.indexOf(path);
    if (i < 0) return;
    this.open.splice(i, 1);
    this.saveTabs();
    if (this.current === path) {
      const next = this.open[Math.min(i, this.open.length - 1)];
      navigate(next ? fileUrl(this.projectId, next) : `/projects/${this.projectId}`, true);
    } else this.renderTabs();
  }

  private renderTabs(): void {
    replace(this.tabs, this.open.map((p) => {
      const name = p.slice(p.lastIndexOf("/") + 1);
      return h("div", { class: `tab ${p === this.current ? "active" : ""}`, role: "presentation" },
        h("a", { href: fileUrl(this.projectId, p), role: "tab", "aria-selected": String(p === this.current), title: p }, icon(fileIcon(p), 14), name),
        h("button", { class: "tab-close", "aria-label": `Close ${name}`, onclick: () => this.closeTab(p) }, icon("x", 12)));
    }));
  }

  private show(path: string | null): void {
    if (path === this.current && this.view) return;
    this.view?.destroy();
    this.view = null;
    this.current = path;
    if (path && !this.open.includes(path)) {
      this.open.push(path);
      this.saveTabs();
    }
    if (path?.includes("/")) {
      const parts = path.split("/");
      for (let i = 1; i < parts.length; i++) this.expanded.add(parts.slice(0, i).join("/"));
    }
    this.renderTabs();
    this.renderTree();
    if (!path) {
      replace(this.pane, h("div", { class: "empty" },
        h("div", { class: "empty-icon" }, icon("file", 28)),
        h("h2", null, "Open a file"),
        h("p", { class: "muted" }, this.viewer ? "Pick a file on the left: you see it live as the others work." : "Pick a file on the left, or create a notebook, a document or a terminal."),
        this.viewer ? null : h("div", { class: "btn-group" },
          h("button", { class: "btn", onclick: () => this.create("file") }, icon("file", 14), "New file"),
          h("button", { class: "btn", onclick: () => this.create("terminal") }, icon("terminal", 14), "New terminal"))));
      return;
    }
    const host = h("div", { class: "doc-host" });
    replace(this.pane, host);
    this.view = openDocument(host, this.projectId, path);
  }
}

export function fileIcon(path: string): string {
  if (path.endsWith(".term")) return "terminal";
  if (path.endsWith(".ipynb")) return "notebook";
  if (path.endsWith(".tex")) return "tex";
  if (/\.(png|jpe?g|gif|svg|webp)$/i.test(path)) return "image";
  return "file";
}
