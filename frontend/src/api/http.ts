// The JSON endpoints under /api/ (sign-up, sign-in, keys) and file transfers.

import { ApiError } from "./ws";

export interface Account {
  account_id: string;
  email: string;
  name: string;
  is_admin: boolean;
}

export interface ApiKey {
  key_id: string;
  prefix: string;
  name: string;
  created: string;
  last_used: string | null;
  revoked: string | null;
}

export async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  const res = await fetch(path, {
    method,
    credentials: "same-origin",
    headers: body === undefined ? {} : { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = (await res.json().catch(() => ({}))) as { error?: { code: string; message: string } };
  if (!res.ok) throw new ApiError(data.error?.code ?? "http_" + res.status, data.error?.message ?? res.statusText);
  return data as T;
}

export const me = () => api<Account>("GET", "/api/auth/me");
export const signIn = (email: string, password: string) => api<Account>("POST", "/api/auth/login", { email, password });
export const signUp = (email: string, password: string, name: string) =>
  api<Account>("POST", "/api/auth/signup", { email, password, name });
export const signOut = () => api<{ ok: true }>("POST", "/api/auth/logout");
export const listKeys = () => api<{ keys: ApiKey[] }>("GET", "/api/auth/keys");
export const createKey = (name: string) => api<{ key: string; key_id: string; name: string }>("POST", "/api/auth/keys", { name });
export const revokeKey = (id: string) => api<{ ok: true }>("DELETE", `/api/auth/keys/${encodeURIComponent(id)}`);

export function encodePath(path: string): string {
  return path.split("/").map(encodeURIComponent).join("/");
}

export function downloadUrl(projectId: string, path: string): string {
  return `/api/projects/${projectId}/download/${encodePath(path)}`;
}

export function rawUrl(projectId: string, path: string): string {
  return `/raw/${projectId}/${encodePath(path)}`;
}

/** Uploads one file into `dir`; the server writes it atomically. */
export async function upload(projectId: string, dir: string, file: File): Promise<void> {
  const path = dir ? `${dir}/${file.name}` : file.name;
  const res = await fetch(`/api/projects/${projectId}/upload/${encodePath(path)}`, {
    method: "PUT",
    credentials: "same-origin",
    headers: { "content-type": "application/octet-stream" },
    body: file,
  });
  if (!res.ok) {
    const data = (await res.json().catch(() => ({}))) as { error?: { code: string; message: string } };
    throw new ApiError(data.error?.code ?? "upload_failed", data.error?.message ?? res.statusText);
  }
}
