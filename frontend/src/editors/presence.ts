// Who else is in a document: one avatar per account, by the names the server stamped on
// their presence (docs/protocol.md, "Presence"). With `onPick`, avatars are buttons (the
// notebook's follow mode).

import { avatar, h, replace } from "../ui/dom";
import type { SharedDoc } from "./yjs";

export interface PresenceOptions {
  /** Called with the account id and name of the avatar clicked. */
  onPick?: (accountId: string, name: string) => void;
  /** The account being followed (its avatar is marked), if any. */
  following?: () => string | null;
  /** A line added to the avatar's title from that person's presence state. */
  detail?: (state: Record<string, unknown>) => string;
}

/** Keeps `el` filled with the avatars of the document's other people; returns the stop
 * and a function that renders again (after `following` changed). */
export function watchPresence(shared: SharedDoc, el: HTMLElement, options: PresenceOptions = {}): (() => void) & { render: () => void } {
  // What the avatars show: most awareness changes are cursor moves, which change none of it.
  let shown = "";
  const render = () => {
    const seen = new Map<string, { name: string; state: Record<string, unknown> }>();
    shared.provider.awareness.getStates().forEach((state, clientId) => {
      if (clientId === shared.doc.clientID) return;
      const user = (state as { user?: { name?: string; account_id?: string } }).user;
      if (user?.name) seen.set(user.account_id ?? String(clientId), { name: user.name, state: state as Record<string, unknown> });
    });
    const followed = options.following?.() ?? null;
    const people = [...seen].map(([id, { name, state }]) => ({ id, name, detail: options.detail?.(state) }));
    const key = JSON.stringify([followed, people]);
    if (key === shown) return;
    shown = key;
    replace(el, people.map(({ id, name, detail }) => {
      const face = avatar(name, id);
      if (!options.onPick) return face;
      const title = `${name}${detail ? ` — ${detail}` : ""} · ${followed === id ? "click to stop following" : "click to follow"}`;
      return h("button", { class: `avatar-follow${followed === id ? " following" : ""}`, title, "aria-label": title, "aria-pressed": String(followed === id), "data-account": id, onclick: () => options.onPick?.(id, name) }, face);
    }));
  };
  shared.provider.awareness.on("change", render);
  render();
  const stop = () => shared.provider.awareness.off("change", render);
  return Object.assign(stop, { render });
}
