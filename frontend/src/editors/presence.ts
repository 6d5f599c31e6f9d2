// Who else is in a document: one avatar per account, by the names the server stamped on
// their presence (docs/protocol.md, "Presence").

import { avatar, replace } from "../ui/dom";
import type { SharedDoc } from "./yjs";

/** Keeps `el` filled with the avatars of the document's other people; returns the stop. */
export function watchPresence(shared: SharedDoc, el: HTMLElement): () => void {
  const render = () => {
    const seen = new Map<string, string>();
    shared.provider.awareness.getStates().forEach((state, clientId) => {
      if (clientId === shared.doc.clientID) return;
      const user = (state as { user?: { name?: string; account_id?: string } }).user;
      if (user?.name) seen.set(user.account_id ?? String(clientId), user.name);
    });
    replace(el, [...seen].map(([id, name]) => avatar(name, id)));
  };
  shared.provider.awareness.on("change", render);
  render();
  return () => shared.provider.awareness.off("change", render);
}
