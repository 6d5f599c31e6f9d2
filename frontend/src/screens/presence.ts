// Who is online in a project: the `project_presence` feed grouped by account (an account
// connected through two server processes has two rows), and this page's own presence.

import { type Client, type Feed, liveRows, type Row } from "../api/ws";

/** account_id -> the documents it has open (possibly none: the project page only). */
export type Online = Map<string, string[]>;

export function onlineFeed(client: Client, projectId: string, render: (online: Online) => void): Feed {
  return liveRows(
    client,
    { project_presence: [{ project_id: projectId, account_id: null, process_id: null, paths: null }] },
    (r) => `${r.account_id}/${r.process_id}`,
    (rows: Map<string, Row>) => {
      const online: Online = new Map();
      for (const r of rows.values()) {
        const id = String(r.account_id);
        const paths = new Set([...(online.get(id) ?? []), ...((r.paths as string[] | null) ?? [])]);
        online.set(id, [...paths].sort());
      }
      render(online);
    },
  );
}

/** Count this page as online in the project until `leave()` (again after reconnects). */
export function joinProject(client: Client, projectId: string): () => void {
  const join = () => { client.call("presence.join", { project_id: projectId }).catch(() => undefined); };
  join();
  const off = client.onConnect(join);
  return () => {
    off();
    if (client.state === "connected") client.call("presence.leave", { project_id: projectId }).catch(() => undefined);
  };
}

export function onlineLabel(paths: string[]): string {
  return paths.length ? `online, in ${paths.join(", ")}` : "online";
}
