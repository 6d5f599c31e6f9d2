// A shared Yjs document for the editors: y-websocket on /yjs with the copy kept in
// IndexedDB (edits made offline survive a reload and sync once), presence, and a guard
// against merging a local copy into a server that no longer has what it once had (a
// server restored from an older backup, or a document rebuilt from its file).

import * as decoding from "lib0/decoding";
import { IndexeddbPersistence } from "y-indexeddb";
import { WebsocketProvider } from "y-websocket";
import * as Y from "yjs";
import type { ConnectionState } from "../api/ws";
import { ACCESS_LOST, DOC_RELOCATED, type DocRelocated } from "./relocated";
import { session } from "../session";
import { colorFor } from "../ui/dom";
import { reportDocState } from "../ui/shell";

const SERVER_SV = "server-state-vector";
// The server's updates are stored in the local copy at most this often, merged: they are
// the server's already (the copy only makes the next open faster), and a cell printing at
// full speed sends twenty a second. Edits made here are stored at once.
const REMOTE_STORE_MS = 1000;
const REMOTE_MAX_BYTES = 1 << 20;
// Close codes of a document whose file was renamed (reason: the new path) or deleted.
const CLOSE_MOVED = 4409;
const CLOSE_DELETED = 4410;
// No longer a member of the document's project (removed by its owner).
const CLOSE_ACCESS_LOST = 4403;


// A moved document's state, by its new key: edits the server refused at the old name
// (sent after the move) go with it to the new one, whose history is the same document.
const carried = new Map<string, Uint8Array>();

export interface SharedDoc {
  doc: Y.Doc;
  provider: WebsocketProvider;
  local: IndexeddbPersistence;
  /** Resolves once the local copy is loaded (the server may still be unreachable). */
  ready: Promise<void>;
  /** Set when the server's copy no longer contains what this client saw there before. */
  onMismatch: (fn: () => void) => void;
  /** Drop the local copy and start over from the server's. */
  discardLocal: () => Promise<void>;
  /** Resolves once the server has stored every update sent so far (or after `timeoutMs`). */
  flushed: (timeoutMs?: number) => Promise<void>;
  destroy(): void;
}

export function yjsBase(projectId: string): string {
  return `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/yjs/${projectId}`;
}

/** True when `now` has at least every clock of `before` (the server lost nothing). */
function dominates(now: Map<number, number>, before: Map<number, number>): boolean {
  for (const [client, clock] of before) if ((now.get(client) ?? 0) < clock) return false;
  return true;
}

// Documents opened ahead of their editor (a deep link's first load): the local copy and
// the /yjs connection start while CodeMirror is still loading, and the editor takes them.
const warm = new Map<string, { shared: SharedDoc; timer: number }>();
const WARM_MS = 15000;
// Keys with an editor open now: never opened a second time ahead of it.
const live = new Set<string>();

/** Start opening a text document before its editor exists (unclaimed ones are dropped). */
export function prewarm(projectId: string, path: string): void {
  const key = `collab:${projectId}:${path}`;
  if (warm.has(key) || live.has(key)) return;
  const shared = openShared(projectId, path);
  const timer = window.setTimeout(() => { if (warm.get(key)?.shared === shared) { warm.delete(key); shared.destroy(); } }, WARM_MS);
  warm.set(key, { shared, timer });
}

/** `doc` lets a model that makes its own Y.Doc (jupyter-ydoc's YNotebook) be the one shared. */
export function openShared(projectId: string, path: string, doc?: Y.Doc): SharedDoc {
  const key = `collab:${projectId}:${path}`;
  const early = doc ? undefined : warm.get(key);
  if (early) {
    warm.delete(key);
    clearTimeout(early.timer);
    live.add(key);
    return early.shared;
  }
  if (!doc) live.add(key);
  doc ??= new Y.Doc();
  const local = new IndexeddbPersistence(key, doc);
  const room = path.split("/").map(encodeURIComponent).join("/");
  // Counts the sync step-2 and update messages sent on the current socket, which the
  // server's acknowledgements (?acks=1, message type 8) count too.
  const sent = { n: 0, acked: 0 };
  // The socket opens while the local copy is still loading from IndexedDB (a cold load
  // would otherwise wait for both in turn). Until the copy is loaded, what the server
  // sends waits; until the server's state vector is checked (its sync step 1, below),
  // this client's content (sync step 2 and updates) waits, so nothing local reaches a
  // server it must not merge into. Its own step 1 (a state vector) goes at once, so the
  // server's answer is already here when the copy is loaded.
  let localLoaded = false;
  class CountingWebSocket extends WebSocket {
    private held: MessageEvent[] = [];
    private outgoing: (string | ArrayBufferLike | Blob | ArrayBufferView)[] | null = [];
    private handler: ((ev: MessageEvent) => void) | null = null;
    constructor(url: string | URL, protocols?: string | string[]) {
      super(url, protocols);
      sent.n = 0;
      sent.acked = 0;
      super.onmessage = (ev: MessageEvent) => {
        if (!localLoaded || this.held.length) this.held.push(ev);
        else this.handler?.(ev);
      };
    }
    // y-websocket sets `onmessage`; it receives the messages once the local copy is in.
    set onmessage(fn: ((ev: MessageEvent) => void) | null) { this.handler = fn; }
    get onmessage(): ((ev: MessageEvent) => void) | null { return this.handler; }
    /** The local copy is loaded: hand over what arrived meanwhile. */
    deliver(): void {
      while (this.held.length && this.readyState === WebSocket.OPEN) this.handler?.(this.held.shift()!);
      this.held = [];
    }
    /** The server's state vector passed the check: send what waited, in order. */
    release(): void {
      const queued = this.outgoing;
      this.outgoing = null;
      for (const data of queued ?? []) this.send(data);
    }
    send(data: string | ArrayBufferLike | Blob | ArrayBufferView): void {
      const content = data instanceof Uint8Array && data[0] === 0 && (data[1] === 1 || data[1] === 2);
      if (content && this.outgoing) { this.outgoing.push(data); return; }
      if (content) sent.n++;
      super.send(data as ArrayBuffer);
    }
  }
  const provider = new WebsocketProvider(yjsBase(projectId), room, doc, {
    connect: false,
    disableBc: true,
    params: { acks: "1" },
    WebSocketPolyfill: CountingWebSocket as unknown as typeof WebSocket,
  });
  // y-indexeddb stores every update in a transaction of its own; the server's go through
  // storeUpdate instead: the first after a quiet second at once (a freshly opened
  // document is in the copy before a reload), the rest merged a second after the last
  // store, or at once when they pass REMOTE_MAX_BYTES, the network goes, or the page is
  // hidden or frozen. A page killed within that second keeps a copy a second behind the
  // server, which sends the rest on the next open. The timer is armed from the update
  // itself, never chained from a timer (a hidden tab runs chained timers once a minute).
  doc.off("update", local._storeUpdate);
  let remote: Uint8Array[] = [];
  let remoteBytes = 0;
  let remoteTimer: number | null = null;
  let lastRemoteStore = -Infinity;
  let discarded = false;
  const flushRemote = () => {
    if (remoteTimer !== null) clearTimeout(remoteTimer);
    remoteTimer = null;
    if (remote.length && !discarded) {
      local._storeUpdate(remote.length === 1 ? remote[0] : Y.mergeUpdates(remote), null);
      lastRemoteStore = performance.now();
    }
    remote = [];
    remoteBytes = 0;
    if (svTimer !== null) saveSv();
  };
  const storeUpdate = (update: Uint8Array, origin: unknown) => {
    if (origin === local || discarded) return;
    if (origin !== provider) { local._storeUpdate(update, origin); return; }
    const since = performance.now() - lastRemoteStore;
    if (remoteTimer === null && since >= REMOTE_STORE_MS) {
      local._storeUpdate(update, origin);
      lastRemoteStore = performance.now();
      return;
    }
    remote.push(update);
    remoteBytes += update.length;
    if (remoteBytes >= REMOTE_MAX_BYTES) flushRemote();
    else remoteTimer ??= window.setTimeout(flushRemote, REMOTE_STORE_MS - since);
  };
  doc.on("update", storeUpdate);
  const onHidden = () => { if (document.visibilityState === "hidden") flushRemote(); };
  window.addEventListener("pagehide", flushRemote);
  document.addEventListener("visibilitychange", onHidden);
  document.addEventListener("freeze", flushRemote);
  const unlisten = () => {
    window.removeEventListener("pagehide", flushRemote);
    document.removeEventListener("visibilitychange", onHidden);
    document.removeEventListener("freeze", flushRemote);
  };

  const { account } = session();
  provider.awareness.setLocalStateField("user", {
    name: account.name || account.email,
    color: colorFor(account.account_id),
    colorLight: colorFor(account.account_id) + "33",
  });
  let mismatch = false;
  let detached = false;
  const mismatchListeners: (() => void)[] = [];
  let storedSv: Map<number, number> | null = null;

  // Check the server's state vector (its sync step 1, always its first message) before
  // anything is merged either way; keep it as the floor for the next connection.
  const syncHandler = provider.messageHandlers[0];
  provider.messageHandlers[0] = (encoder, decoder, prov, emitSynced, type) => {
    if (mismatch) return;
    const peek = decoding.clone(decoder);
    if (decoding.readVarUint(peek) === 0) {
      const sv = Y.decodeStateVector(decoding.readVarUint8Array(peek));
      if (storedSv && storedSv.size && !dominates(sv, storedSv)) {
        mismatch = true;
        reportDocState(key, null);
        provider.shouldConnect = false;
        provider.ws?.close();
        for (const fn of mismatchListeners) fn();
        return;
      }
      void local.set(SERVER_SV, Y.encodeStateVector(sv) as unknown as ArrayBuffer);
      storedSv = sv;
      (prov.ws as CountingWebSocket | null)?.release();
    }
    syncHandler(encoder, decoder, prov, emitSynced, type);
  };

  let svTimer: number | null = null;
  const saveSv = () => {
    if (svTimer !== null) clearTimeout(svTimer);
    svTimer = null;
    if (storedSv && !mismatch && !discarded) void local.set(SERVER_SV, Y.encodeStateVector(storedSv) as unknown as ArrayBuffer);
  };

  // Everything this socket sent is stored: the server holds at least this document's
  // state now (what it sent us, it had), which is the floor the next connection checks.
  const ackWaiters = new Set<(acked: number) => void>();
  provider.messageHandlers[8] = (_encoder, decoder) => {
    const acked = decoding.readVarUint(decoder);
    sent.acked = acked;
    for (const fn of [...ackWaiters]) fn(acked);
    if (mismatch || acked !== sent.n) return;
    const first = !storedSv?.size;
    storedSv = Y.decodeStateVector(Y.encodeStateVector(doc));
    // Written at most once a second (each key is acknowledged), like the server's
    // updates; the first floor of a new document at once.
    if (first) saveSv();
    else svTimer ??= window.setTimeout(saveSv, REMOTE_STORE_MS);
  };

  // Moved or deleted: never reconnect to the old name (that would recreate the file).
  provider.on("connection-close", (ev: CloseEvent | null) => {
    if (ev?.code === CLOSE_ACCESS_LOST) {
      // Reconnecting would be refused the same way: stop, and let the screen say why.
      provider.shouldConnect = false;
      detached = true;
      reportDocState(key, null);
      window.dispatchEvent(new CustomEvent(ACCESS_LOST, { detail: { projectId } }));
      return;
    }
    if (!ev || (ev.code !== CLOSE_MOVED && ev.code !== CLOSE_DELETED)) return;
    provider.shouldConnect = false;
    const to = ev.code === CLOSE_MOVED && ev.reason ? ev.reason : null;
    if (to) carried.set(`collab:${projectId}:${to}`, Y.encodeStateAsUpdate(doc));
    window.dispatchEvent(new CustomEvent<DocRelocated>(DOC_RELOCATED, { detail: { projectId, path, to } }));
  });

  const savedSv = local.get(SERVER_SV) as Promise<Uint8Array | undefined>;
  const ready = local.whenSynced.then(async () => {
    performance.mark("collab:idb-ready");
    const moved = carried.get(key);
    if (moved) { carried.delete(key); Y.applyUpdate(doc, moved); }
    const raw = await savedSv;
    if (raw instanceof Uint8Array) storedSv = Y.decodeStateVector(raw);
    localLoaded = true;
    (provider.ws as CountingWebSocket | null)?.deliver();
  });
  if (navigator.onLine) provider.connect();

  // A socket that went offline may look open for a long while: drop it at once, and come
  // back as soon as the browser is online again instead of waiting for a backoff.
  const goOffline = () => { flushRemote(); if (!mismatch) provider.disconnect(); status("offline"); };
  const goOnline = () => { if (!mismatch) void ready.then(() => provider.connect()); };
  window.addEventListener("offline", goOffline);
  window.addEventListener("online", goOnline);

  // A document detached on purpose (mismatch, access lost, closed) is no connection trouble.
  const status = (s: ConnectionState) => reportDocState(key, mismatch || detached ? null : s);
  provider.on("status", ({ status: st }) => status(st === "connected" ? "connected" : navigator.onLine ? "reconnecting" : "offline"));
  provider.on("sync", (synced: boolean) => { if (synced) { performance.mark("collab:yjs-synced"); status("connected"); } });
  provider.on("status", ({ status: st }) => { if (st === "connected") performance.mark("collab:yjs-open"); });

  return {
    doc,
    provider,
    local,
    ready,
    onMismatch: (fn) => { mismatchListeners.push(fn); if (mismatch) fn(); },
    discardLocal: async () => {
      discarded = true;
      doc.off("update", storeUpdate);
      flushRemote();
      unlisten();
      await local.clearData();
    },
    flushed: (timeoutMs = 5000) => new Promise<void>((resolve) => {
      const target = sent.n;
      if (!provider.wsconnected || sent.acked >= target) { resolve(); return; }
      const done = () => { clearTimeout(timer); ackWaiters.delete(check); resolve(); };
      const check = (acked: number) => { if (acked >= target) done(); };
      const timer = window.setTimeout(done, timeoutMs);
      ackWaiters.add(check);
    }),
    destroy: () => {
      detached = true;
      live.delete(key);
      window.removeEventListener("offline", goOffline);
      window.removeEventListener("online", goOnline);
      unlisten();
      reportDocState(key, null);
      provider.destroy();
      flushRemote();
      doc.off("update", storeUpdate);
      void local.destroy();
      doc.destroy();
    },
  };
}
