// The signed-in account and the one /ws connection every screen shares.

import { type Account, me } from "./api/http";
import { ApiError, Client } from "./api/ws";

// The account is remembered so that a page opened offline still knows who is signed in;
// the server checks the session again when the connection comes back.
const ACCOUNT_KEY = "collab:account";

export interface Session {
  account: Account;
  client: Client;
}

let current: Session | null = null;

/** The account the server put in the page (collab/web/routes.py), read once. */
function inlineAccount(): Account | null {
  const el = document.getElementById("collab-account");
  if (!el) return null;
  el.remove();
  try {
    const account = JSON.parse(el.textContent ?? "") as Account;
    return typeof account?.account_id === "string" ? account : null;
  } catch {
    return null;
  }
}

export async function loadSession(): Promise<Session | null> {
  if (current) return current;
  const inline = inlineAccount();
  if (inline) {
    localStorage.setItem(ACCOUNT_KEY, JSON.stringify(inline));
    current = { account: inline, client: new Client() };
    return current;
  }
  try {
    const account = await me();
    performance.mark("collab:me");
    localStorage.setItem(ACCOUNT_KEY, JSON.stringify(account));
    current = { account, client: new Client() };
  } catch (err) {
    const saved = localStorage.getItem(ACCOUNT_KEY);
    current = !(err instanceof ApiError) && saved ? { account: JSON.parse(saved) as Account, client: new Client() } : null;
  }
  return current;
}

export function startSession(account: Account): Session {
  current?.client.close();
  localStorage.setItem(ACCOUNT_KEY, JSON.stringify(account));
  current = { account, client: new Client() };
  return current;
}

export function endSession(): void {
  current?.client.close();
  localStorage.removeItem(ACCOUNT_KEY);
  // Documents kept for offline use leave with the account (a shared computer).
  void indexedDB.databases?.().then((dbs) => {
    for (const db of dbs) if (db.name?.startsWith("collab:")) indexedDB.deleteDatabase(db.name);
  });
  current = null;
}

export function session(): Session {
  if (!current) throw new Error("not signed in");
  return current;
}
