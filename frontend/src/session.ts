// The signed-in account and the one /ws connection every screen shares.

import { type Account, me } from "./api/http";
import { Client } from "./api/ws";

export interface Session {
  account: Account;
  client: Client;
}

let current: Session | null = null;

export async function loadSession(): Promise<Session | null> {
  if (current) return current;
  try {
    const account = await me();
    current = { account, client: new Client() };
  } catch {
    current = null;
  }
  return current;
}

export function startSession(account: Account): Session {
  current?.client.close();
  current = { account, client: new Client() };
  return current;
}

export function endSession(): void {
  current?.client.close();
  current = null;
}

export function session(): Session {
  if (!current) throw new Error("not signed in");
  return current;
}
