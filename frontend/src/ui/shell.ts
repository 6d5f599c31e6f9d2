// The frame around every signed-in screen: brand, breadcrumbs, connection state, theme,
// account menu.

import { signOut } from "../api/http";
import type { ConnectionState } from "../api/ws";
import { navigate } from "../router";
import { endSession, session } from "../session";
import { avatar, h, icon, replace } from "./dom";
import { currentTheme, toggleTheme } from "./theme";

const LABELS: Record<ConnectionState, string> = {
  connecting: "Connecting…",
  connected: "Connected",
  reconnecting: "Reconnecting…",
  offline: "Offline",
};

/** Extra sources of connection trouble (a document's socket) reported by screens. */
const docStates = new Map<string, ConnectionState>();
let refresh: () => void = () => undefined;

export function reportDocState(key: string, state: ConnectionState | null): void {
  if (state === null) docStates.delete(key);
  else docStates.set(key, state);
  refresh();
}

export function connectionIndicator(): HTMLElement {
  const el = h("div", { class: "conn", role: "status", "aria-live": "polite", "data-testid": "connection" });
  const { client } = session();
  const render = () => {
    let state = client.state;
    for (const s of docStates.values()) if (state === "connected" && s !== "connected") state = s;
    if (!navigator.onLine) state = "offline";
    el.dataset.state = state;
    replace(el, h("span", { class: "conn-dot" }), h("span", { class: "conn-label" }, LABELS[state]));
  };
  refresh = render;
  client.onState(render);
  window.addEventListener("online", render);
  window.addEventListener("offline", render);
  return el;
}

export function shell(crumbs: (Node | string)[], content: HTMLElement, actions: Node[] = []): HTMLElement {
  const { account } = session();
  const themeBtn = h("button", { class: "btn btn-icon", "aria-label": "Toggle dark mode", title: "Toggle theme", onclick: toggleTheme }, icon(currentTheme() === "dark" ? "sun" : "moon"));
  window.addEventListener("collab:theme", () => replace(themeBtn, icon(currentTheme() === "dark" ? "sun" : "moon")));
  const items = h("div", { class: "menu-items", role: "menu", hidden: true },
    h("div", { class: "menu-head" }, h("strong", null, account.name || "—"), h("span", { class: "muted" }, account.email)),
    h("a", { href: "/account", class: "menu-item", role: "menuitem" }, icon("key"), "Account and API keys"),
    h("button", { class: "menu-item", role: "menuitem", onclick: async () => { await signOut().catch(() => undefined); endSession(); navigate("/signin"); } }, icon("logout"), "Sign out"));
  const trigger = h("button", { class: "btn btn-icon avatar-btn", "aria-label": "Account menu", "aria-haspopup": "menu", "aria-expanded": "false" }, avatar(account.name || account.email, account.account_id));
  const setOpen = (open: boolean) => {
    items.hidden = !open;
    trigger.setAttribute("aria-expanded", String(open));
    if (open) (items.querySelector(".menu-item") as HTMLElement | null)?.focus();
  };
  trigger.addEventListener("click", (e) => { e.stopPropagation(); setOpen(items.hidden === true); });
  items.addEventListener("keydown", (e) => {
    const all = [...items.querySelectorAll<HTMLElement>(".menu-item")];
    const i = all.indexOf(document.activeElement as HTMLElement);
    if (e.key === "Escape") { setOpen(false); trigger.focus(); }
    else if (e.key === "ArrowDown") { e.preventDefault(); all[(i + 1) % all.length].focus(); }
    else if (e.key === "ArrowUp") { e.preventDefault(); all[(i - 1 + all.length) % all.length].focus(); }
  });
  document.addEventListener("click", (e) => { if (!items.contains(e.target as Node)) setOpen(false); });
  const menu = h("div", { class: "menu" }, trigger, items);
  const trail: Node[] = [];
  crumbs.forEach((c, i) => {
    if (i) trail.push(h("span", { class: "crumb-sep", "aria-hidden": "true" }, "/"));
    trail.push(typeof c === "string" ? h("span", { class: "crumb" }, c) : c);
  });
  return h("div", { class: "shell" },
    h("header", { class: "topbar" },
      h("a", { href: "/projects", class: "brand", "aria-label": "collab home" }, h("span", { class: "logo" }), "collab"),
      h("nav", { class: "crumbs", "aria-label": "Breadcrumb" }, trail),
      h("div", { class: "topbar-right" }, ...actions, connectionIndicator(), themeBtn, menu)),
    h("main", { class: "content", id: "main" }, content));
}
