// The account page: display name and API keys (create, list, revoke).

import { type ApiKey, createKey, listKeys, revokeKey } from "../api/http";
import { session } from "../session";
import { confirm, h, icon, relativeTime, replace, toast } from "../ui/dom";
import { shell } from "../ui/shell";

export function accountScreen(): HTMLElement {
  const { account, client } = session();
  const name = h("input", { class: "input", id: "account-name", value: account.name, maxlength: 200 });
  const keysBody = h("div", { class: "keys" });
  const fresh = h("div");
  const load = async () => {
    const { keys } = await listKeys();
    const live = keys.filter((k) => !k.revoked);
    replace(keysBody, live.length === 0
      ? h("p", { class: "empty-inline muted" }, "No API keys yet. Programs use a key to open the API as you.")
      : h("table", { class: "table" },
          h("thead", null, h("tr", null, h("th", null, "Name"), h("th", null, "Key"), h("th", null, "Created"), h("th", null, "Last used"), h("th", null, h("span", { class: "sr-only" }, "Actions")))),
          h("tbody", null, live.map((k: ApiKey) => h("tr", { "data-key": k.key_id },
            h("td", null, k.name || "Unnamed"),
            h("td", null, h("code", null, `${k.prefix}…`)),
            h("td", { class: "muted" }, relativeTime(k.created)),
            h("td", { class: "muted" }, k.last_used ? relativeTime(k.last_used) : "Never"),
            h("td", { class: "cell-actions" }, h("button", { class: "btn btn-ghost btn-sm", "aria-label": `Revoke key ${k.name}`, onclick: async () => {
              if (!(await confirm("Revoke this key?", `Programs using “${k.name || k.prefix}” stop working at once.`, "Revoke"))) return;
              await revokeKey(k.key_id);
              toast("Key revoked");
              void load();
            } }, "Revoke")))))));
  };
  const keyName = h("input", { class: "input", placeholder: "e.g. grading script", id: "key-name" });
  const content = h("div", { class: "page narrow" },
    h("div", { class: "page-head" }, h("h1", null, "Account")),
    h("section", { class: "card" },
      h("h2", null, "Profile"),
      h("form", { class: "row-form", onsubmit: async (e: Event) => {
        e.preventDefault();
        await client.set("accounts", { account_id: account.account_id, name: name.value.trim() });
        account.name = name.value.trim();
        toast("Name saved");
      } },
        h("label", { class: "field grow", for: "account-name" }, h("span", null, "Name"), name),
        h("div", { class: "field" }, h("span", null, "Email"), h("div", { class: "input input-static" }, account.email)),
        h("button", { class: "btn", type: "submit" }, "Save"))),
    h("section", { class: "card" },
      h("h2", null, "API keys"),
      h("p", { class: "muted" }, "A key lets a program use the WebSocket API as you: ", h("code", null, "Authorization: Bearer ck_…"), "."),
      h("form", { class: "row-form", onsubmit: async (e: Event) => {
        e.preventDefault();
        const made = await createKey(keyName.value.trim());
        keyName.value = "";
        replace(fresh, h("div", { class: "callout", role: "status" },
          h("strong", null, "Copy your new key now. It will not be shown again."),
          h("div", { class: "copy-row" }, h("code", { class: "secret", "data-testid": "new-key" }, made.key),
            h("button", { class: "btn btn-sm", type: "button", onclick: () => navigator.clipboard?.writeText(made.key).then(() => toast("Copied")) }, "Copy"))));
        void load();
      } },
        h("label", { class: "field grow", for: "key-name" }, h("span", null, "Key name"), keyName),
        h("button", { class: "btn btn-primary", type: "submit" }, icon("plus"), "Create key")),
      fresh,
      keysBody));
  void load();
  return shell([h("a", { href: "/projects" }, "Projects"), "Account"], content);
}
