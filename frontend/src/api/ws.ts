// The typed /ws client: queries, sets, deletes, calls, and changefeeds that survive a
// reconnect by resuming from their last cursor. The TypeScript twin of collab/client.py.

export type Row = Record<string, unknown>;
export type Query = Record<string, Row | Row[]>;
export type ConnectionState = "connecting" | "connected" | "reconnecting" | "offline";

export class ApiError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export type FeedEvent =
  | { action: "initial"; rows: Row[] }
  | { action: "insert"; new_val: Row }
  | { action: "update"; new_val: Row; old_val: Row }
  | { action: "delete"; old_val: Row };

interface Pending {
  resolve(msg: Answer): void;
  reject(err: Error): void;
}
interface Answer {
  id?: number | string | null;
  result?: unknown;
  error?: { code: string; message: string };
  feed?: string;
  cursor?: string;
  action?: string;
  new_val?: Row;
  old_val?: Row;
  terminal?: string;
  data?: string;
  exit?: number;
}

/** A live query. `rows` is always the current result, keyed by the table's primary key. */
export class Feed {
  feedId: string | null = null;
  cursor: string | null = null;
  closed = false;
  constructor(
    readonly client: Client,
    readonly query: Query,
    readonly onEvent: (e: FeedEvent) => void,
    readonly onError: (e: ApiError) => void,
  ) {}

  cancel(): void {
    this.closed = true;
    this.client.dropFeed(this);
  }
}

const WRITE_TIMEOUT_MS = 30000;

export class Client {
  state: ConnectionState = "connecting";
  private ws: WebSocket | null = null;
  private nextId = 1;
  private pending = new Map<number, Pending>();
  private feeds = new Set<Feed>();
  private byFeedId = new Map<string, Feed>();
  private stateListeners = new Set<(s: ConnectionState) => void>();
  private terminalListeners = new Map<string, Set<(m: { data?: string; exit?: number }) => void>>();
  private connectListeners = new Set<() => void>();
  private retry = 0;
  private timer: number | undefined;
  private stopped = false;

  constructor(readonly url: string = defaultUrl()) {
    window.addEventListener("online", () => this.reconnectNow());
    window.addEventListener("offline", () => this.ws?.close());
    this.open();
  }

  onState(fn: (s: ConnectionState) => void): () => void {
    this.stateListeners.add(fn);
    fn(this.state);
    return () => this.stateListeners.delete(fn);
  }

  /** Called after every (re)connection, once feeds are re-established. */
  onConnect(fn: () => void): () => void {
    this.connectListeners.add(fn);
    return () => this.connectListeners.delete(fn);
  }

  onTerminal(id: string, fn: (m: { data?: string; exit?: number }) => void): () => void {
    let set = this.terminalListeners.get(id);
    if (!set) this.terminalListeners.set(id, (set = new Set()));
    set.add(fn);
    return () => set!.delete(fn);
  }

  close(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.ws?.close();
  }

  /** A read: `{table: {...}}` or `{table: [{...}]}` with null leaves to fill in. */
  async query<T = Row>(query: Query, options?: Record<string, unknown>): Promise<T> {
    const table = Object.keys(query)[0];
    const msg: Record<string, unknown> = { query };
    if (options) msg.options = options;
    const answer = await this.request(msg);
    return (answer.result as Record<string, unknown>)[table] as T;
  }

  async set(table: string, row: Row): Promise<Row> {
    return this.query<Row>({ [table]: row });
  }

  async del(table: string, key: Row): Promise<Row> {
    const answer = await this.request({ query: { [table]: key }, options: { delete: true } });
    return (answer.result as Record<string, Row>)[table];
  }

  async call<T = unknown>(name: string, args?: Record<string, unknown>): Promise<T> {
    const answer = await this.request({ call: name, args: args ?? null });
    return answer.result as T;
  }

  /** Follow a many-query: an "initial" event, then every change; resumes after reconnects. */
  feed(query: Query, onEvent: (e: FeedEvent) => void, onError: (e: ApiError) => void = logError): Feed {
    const feed = new Feed(this, query, onEvent, onError);
    this.feeds.add(feed);
    if (this.state === "connected") void this.subscribe(feed);
    return feed;
  }

  dropFeed(feed: Feed): void {
    this.feeds.delete(feed);
    if (feed.feedId) {
      this.byFeedId.delete(feed.feedId);
      if (this.state === "connected") this.request({ cancel: feed.feedId }).catch(() => undefined);
    }
  }

  private async subscribe(feed: Feed): Promise<void> {
    const msg: Record<string, unknown> = { query: feed.query, changes: true };
    if (feed.cursor) msg.resume = feed.cursor;
    try {
      const answer = await this.request(msg, (a) => {
        // Registered before the answer resolves, so no event that follows it is missed.
        if (a.feed) {
          feed.feedId = a.feed;
          this.byFeedId.set(a.feed, feed);
        }
      });
      if (feed.closed) {
        this.dropFeed(feed);
        return;
      }
      feed.cursor = answer.cursor ?? feed.cursor;
      const result = answer.result as Record<string, unknown>;
      if (!result || result.resumed !== true) {
        const table = Object.keys(feed.query)[0];
        feed.onEvent({ action: "initial", rows: (result[table] as Row[]) ?? [] });
      }
    } catch (err) {
      if (err instanceof ApiError && (err.code === "cursor_expired" || err.code === "bad_cursor")) {
        feed.cursor = null;
        return this.subscribe(feed);
      }
      if (err instanceof ApiError) feed.onError(err);
    }
  }

  private request(msg: Record<string, unknown>, early?: (a: Answer) => void): Promise<Answer> {
    const id = this.nextId++;
    return new Promise<Answer>((resolve, reject) => {
      const send = () => {
        const timeout = window.setTimeout(() => {
          this.pending.delete(id);
          reject(new ApiError("timeout", "the server did not answer"));
        }, WRITE_TIMEOUT_MS);
        this.pending.set(id, {
          resolve: (a) => {
            clearTimeout(timeout);
            early?.(a);
            if (a.error) reject(new ApiError(a.error.code, a.error.message));
            else resolve(a);
          },
          reject: (e) => {
            clearTimeout(timeout);
            reject(e);
          },
        });
        this.ws!.send(JSON.stringify({ id, ...msg }));
      };
      if (this.state === "connected") send();
      else {
        // Requests made while disconnected go out once the connection is back.
        const off = this.onConnect(() => {
          off();
          send();
        });
      }
    });
  }

  private setState(s: ConnectionState): void {
    if (this.state === s) return;
    this.state = s;
    for (const fn of this.stateListeners) fn(s);
  }

  private reconnectNow(): void {
    if (this.state === "connected" || this.stopped) return;
    clearTimeout(this.timer);
    this.retry = 0;
    this.open();
  }

  private open(): void {
    if (this.stopped) return;
    const ws = new WebSocket(this.url);
    this.ws = ws;
    ws.onopen = () => {
      performance.mark("collab:ws-open");
      this.retry = 0;
      this.setState("connected");
      for (const feed of this.feeds) void this.subscribe(feed);
      for (const fn of [...this.connectListeners]) fn();
    };
    ws.onmessage = (ev) => this.receive(JSON.parse(ev.data as string) as Answer);
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      for (const p of this.pending.values()) p.reject(new ApiError("disconnected", "the connection was lost"));
      this.pending.clear();
      this.byFeedId.clear();
      for (const f of this.feeds) f.feedId = null;
      if (ev.code === 4401) {
        this.setState("offline");
        window.dispatchEvent(new CustomEvent("collab:unauthenticated"));
        return;
      }
      this.setState(navigator.onLine ? "reconnecting" : "offline");
      const delay = Math.min(10000, 250 * 2 ** this.retry++) * (0.75 + Math.random() / 2);
      this.timer = window.setTimeout(() => this.open(), delay);
    };
  }

  private receive(msg: Answer): void {
    if (msg.terminal !== undefined) {
      for (const fn of this.terminalListeners.get(msg.terminal) ?? []) fn(msg);
      return;
    }
    if (msg.feed && msg.id === undefined) {
      const feed = this.byFeedId.get(msg.feed);
      if (!feed) return;
      if (msg.error) {
        // The server lost our place (log trimmed): start over with a fresh initial result.
        feed.cursor = null;
        feed.feedId = null;
        void this.subscribe(feed);
        return;
      }
      if (msg.cursor) feed.cursor = msg.cursor;
      if (msg.action === "insert") feed.onEvent({ action: "insert", new_val: msg.new_val! });
      else if (msg.action === "update") feed.onEvent({ action: "update", new_val: msg.new_val!, old_val: msg.old_val! });
      else if (msg.action === "delete") feed.onEvent({ action: "delete", old_val: msg.old_val! });
      return;
    }
    if (typeof msg.id === "number") {
      const p = this.pending.get(msg.id);
      if (p) {
        this.pending.delete(msg.id);
        p.resolve(msg);
      }
    }
  }
}

function logError(e: ApiError): void {
  console.error("feed error", e.code, e.message);
}

function defaultUrl(): string {
  return `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
}

/** Keeps a feed's rows in a Map by key, calling `render` after every change. */
export function liveRows(
  client: Client,
  query: Query,
  key: (r: Row) => string,
  render: (rows: Map<string, Row>) => void,
  onError?: (e: ApiError) => void,
): Feed {
  const rows = new Map<string, Row>();
  return client.feed(
    query,
    (e) => {
      if (e.action === "initial") {
        rows.clear();
        for (const r of e.rows) rows.set(key(r), r);
      } else if (e.action === "insert") rows.set(key(e.new_val), e.new_val);
      else if (e.action === "update") {
        rows.delete(key(e.old_val));
        rows.set(key(e.new_val), { ...e.new_val });
      } else rows.delete(key(e.old_val));
      render(rows);
    },
    onError,
  );
}
