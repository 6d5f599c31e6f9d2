// The projects list: a live changefeed, so projects created, renamed, started or stopped
// anywhere (another tab, a program) show up without a reload.

import { ApiError, liveRows, type Row } from "../api/ws";
import { navigate } from "../router";
import { session } from "../session";
import { h, icon, prompt, relativeTime, replace, toast } from "../ui/dom";
import { shell } from "../ui/shell";

export const PROJECT_FIELDS = {
  project_id: null, title: null, description: null, last_edited: null, state: null,
  action: null, state_error: null,
};

export function stateBadge(p: Row): HTMLElement {
  const state = String(p.action && p.state === "stopped" ? "starting" : p.state ?? "stopped");
  const label = state[0].toUpperCase() + state.slice(1);
  return h("span", { class: `badge badge-${state}`, "data-testid": "project-state", title: p.state_error ? String(p.state_error) : label },
    h("span", { class: "badge-dot" }), label);
}

/** A viewer's mark: sees the project live, changes nothing (no start, stop or rename). */
export function viewOnlyBadge(): HTMLElement {
  return h("span", { class: "badge badge-viewer", "data-testid": "viewer", title: "You are a viewer in this project: you see everything live but cannot change it" }, icon("eye", 13), "Viewer");
}

export function lifecycleButtons(p: Row): HTMLElement {
  const { client } = session();
  const act = (action: string) => async (e: Event) => {
    e.stopPropagation();
    try {
      await client.set("projects", { project_id: p.project_id as string, action });
    } catch (err) {
      toast(err instanceof ApiError ? err.message : String(err), "error");
    }
  };
  const running = p.state === "running" || p.state === "starting";
  return h("div", { class: "btn-group" },
    running
      ? h("button", { class: "btn btn-ghost btn-sm", onclick: act("stop"), "aria-label": `Stop ${p.title}` }, icon("stop", 14), "Stop")
      : h("button", { class: "btn btn-ghost btn-sm", onclick: act("start"), "aria-label": `Start ${p.title}` }, icon("play", 14), "Start"),
    h("button", { class: "btn btn-ghost btn-sm", onclick: act("restart"), "aria-label": `Restart ${p.title}` }, icon("restart", 14), "Restart"));
}

export async function renameProject(p: Row): Promise<void> {
  const title = await prompt("Rename project", { label: "Title", value: String(p.title ?? ""), submit: "Rename" });
  if (title) await session().client.set("projects", { project_id: p.project_id as string, title });
}

export function projectsScreen(): { el: HTMLElement; cleanup: () => void } {
  const { client } = session();
  const list = h("div", { class: "project-list", "aria-busy": "true" });
  const search = h("input", { class: "input search", type: "search", placeholder: "Filter projects", "aria-label": "Filter projects" });
  let rows = new Map<string, Row>();
  let viewerOf = new Set<string>();
  const render = () => {
    list.removeAttribute("aria-busy");
    const q = search.value.toLowerCase();
    const items = [...rows.values()]
      .filter((p) => !q || String(p.title).toLowerCase().includes(q))
      .sort((a, b) => String(b.last_edited).localeCompare(String(a.last_edited)));
    if (rows.size === 0) {
      replace(list, h("div", { class: "empty" },
        h("div", { class: "empty-icon" }, icon("folder", 28)),
        h("h2", null, "No projects yet"),
        h("p", { class: "muted" }, "A project holds notebooks, documents and terminals that you share with collaborators."),
        h("button", { class: "btn btn-primary", onclick: create }, icon("plus"), "New project")));
      return;
    }
    replace(list, h("table", { class: "table projects-table" },
      h("thead", null, h("tr", null, h("th", null, "Title"), h("th", null, "State"), h("th", null, "Last edited"), h("th", null, h("span", { class: "sr-only" }, "Actions")))),
      h("tbody", null, items.map((p) => h("tr", { class: "clickable", "data-project": p.project_id as string, onclick: () => navigate(`/projects/${p.project_id}`) },
        h("td", null, h("a", { href: `/projects/${p.project_id}`, class: "project-title" }, String(p.title || "Untitled")),
          p.description ? h("div", { class: "muted small" }, String(p.description)) : null),
        h("td", null, stateBadge(p)),
        h("td", { class: "muted" }, relativeTime(p.last_edited)),
        h("td", { class: "cell-actions", onclick: (e: Event) => e.stopPropagation() },
          viewerOf.has(String(p.project_id))
            ? viewOnlyBadge()
            : [lifecycleButtons(p),
               h("button", { class: "btn btn-ghost btn-sm", onclick: () => renameProject(p), "aria-label": `Rename ${p.title}` }, icon("edit", 14), "Rename")]))))));
  };
  search.addEventListener("input", render);
  const feed = liveRows(client, { projects: [PROJECT_FIELDS] }, (r) => String(r.project_id), (r) => { rows = r; render(); });
  // My role in each project, live: a project where I only look offers no actions.
  const roles = liveRows(client, { project_users: [{ project_id: null, account_id: session().account.account_id, role: null }] }, (r) => String(r.project_id), (r) => {
    viewerOf = new Set([...r.values()].filter((m) => m.role === "viewer").map((m) => String(m.project_id)));
    if (rows.size) render();
  });
  async function create() {
    const title = await prompt("New project", { label: "Title", placeholder: "e.g. Linear algebra", submit: "Create" });
    if (!title) return;
    const made = await client.set("projects", { title });
    navigate(`/projects/${made.project_id}`);
  }
  const content = h("div", { class: "page" },
    h("div", { class: "page-head" },
      h("div", null, h("h1", null, "Projects"), h("p", { class: "muted" }, "Everything you work on, live.")),
      h("div", { class: "page-actions" }, search, h("button", { class: "btn btn-primary", onclick: create, "aria-keyshortcuts": "n" }, icon("plus"), "New project"))),
    list);
  const onKey = (e: KeyboardEvent) => {
    if (e.key === "n" && !(e.target instanceof HTMLInputElement) && !(e.target instanceof HTMLTextAreaElement) && !e.ctrlKey && !e.metaKey) {
      e.preventDefault();
      void create();
    }
  };
  document.addEventListener("keydown", onKey);
  return { el: shell(["Projects"], content), cleanup: () => { feed.cancel(); roles.cancel(); document.removeEventListener("keydown", onKey); } };
}
