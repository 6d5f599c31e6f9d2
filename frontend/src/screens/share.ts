// The collaborators panel of a project: who is in it, add by email, remove.

import { ApiError, liveRows, type Row } from "../api/ws";
import { session } from "../session";
import { avatar, h, icon, replace, toast } from "../ui/dom";
import { type Online, onlineFeed, onlineLabel } from "./presence";

export function sharePanel(projectId: string, title: string): void {
  const { client, account } = session();
  const list = h("ul", { class: "people", "aria-label": "Collaborators" });
  const invites = h("ul", { class: "people" });
  const email = h("input", { class: "input", type: "email", placeholder: "name@example.com", required: true, id: "share-email" });
  let amOwner = false;
  // An owner makes a member a collaborator (changes everything) or a viewer (sees all
  // live, changes nothing).
  const roleSelect = (r: Row) => {
    const select = h("select", { class: "input input-sm role-select", "aria-label": `Role of ${r.name}`, onchange: async () => {
      try {
        await client.call("project.set_role", { project_id: projectId, account_id: r.account_id, role: select.value });
        toast(`${r.name} is now a ${select.value}`);
      } catch (err) {
        toast((err as Error).message, "error");
        select.value = String(r.role);
      }
    } },
    h("option", { value: "collaborator" }, "collaborator"), h("option", { value: "viewer" }, "viewer"));
    select.value = String(r.role);
    return select;
  };
  let members = new Map<string, Row>();
  let online: Online = new Map();
  const render = (rows: Map<string, Row> = members) => {
    members = rows;
    amOwner = [...rows.values()].some((r) => r.account_id === account.account_id && r.role === "owner");
    replace(list, [...rows.values()].sort((a, b) => String(a.role).localeCompare(String(b.role)) * -1).map((r) => h("li", { class: "person", "data-account": r.account_id as string },
      avatar(String(r.name || "?"), String(r.account_id)),
      h("span", { class: "person-name" }, String(r.name || "Unnamed"), r.account_id === account.account_id ? h("span", { class: "muted" }, " (you)") : null),
      online.has(String(r.account_id))
        ? h("span", { class: "online-state is-online", title: onlineLabel(online.get(String(r.account_id))!) }, h("span", { class: "presence-dot", "aria-hidden": "true" }), "online")
        : h("span", { class: "online-state muted" }, "away"),
      amOwner && r.role !== "owner"
        ? roleSelect(r)
        : h("span", { class: "role muted" }, String(r.role)),
      amOwner && r.role !== "owner"
        ? h("button", { class: "btn btn-ghost btn-sm", "aria-label": `Remove ${r.name}`, onclick: async () => {
            await client.del("project_users", { project_id: projectId, account_id: r.account_id as string });
            toast(`Removed ${r.name}`);
          } }, "Remove")
        : null)));
  };
  // A new member may be an invitation just accepted: the pending list is read again.
  const feed = liveRows(client, { collaborators: [{ project_id: projectId, account_id: null, role: null, name: null }] }, (r) => String(r.account_id), (rows) => { render(rows); void loadInvites(); });
  const presence = onlineFeed(client, projectId, (now) => { online = now; render(); });
  async function loadInvites() {
    try {
      const res = await client.call<{ invitations: { email: string }[] }>("project.invitations", { project_id: projectId });
      replace(invites, res.invitations.map((i) => h("li", { class: "person" }, h("span", { class: "avatar avatar-pending" }, "@"), h("span", { class: "person-name" }, i.email), h("span", { class: "role muted" }, "invited"))));
    } catch {
      replace(invites);
    }
  }
  const dialog = h("dialog", { class: "dialog dialog-wide", "aria-label": `Share ${title}` },
    h("div", { class: "dialog-head" }, h("h2", null, `Share “${title}”`), h("button", { class: "btn btn-icon", "aria-label": "Close", onclick: () => close() }, icon("x"))),
    h("form", { class: "row-form", onsubmit: async (e: Event) => {
      e.preventDefault();
      try {
        await client.call("project.invite", { project_id: projectId, email: email.value.trim() });
        toast(`Invited ${email.value.trim()}`);
        email.value = "";
        void loadInvites();
      } catch (err) {
        toast(err instanceof ApiError ? err.message : String(err), "error");
      }
    } },
      h("label", { class: "field grow", for: "share-email" }, h("span", null, "Add people by email"), email),
      h("button", { class: "btn btn-primary", type: "submit" }, "Add")),
    h("p", { class: "muted small" }, "Someone without an account yet gets access when they sign up with that email."),
    list, invites);
  const close = () => { feed.cancel(); presence.cancel(); dialog.close(); dialog.remove(); };
  dialog.addEventListener("cancel", close);
  document.body.append(dialog);
  dialog.showModal();
  email.focus();
}
