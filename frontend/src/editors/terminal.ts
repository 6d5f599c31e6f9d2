// A shared terminal: xterm.js fed by the terminal.* calls. Every viewer gets the same
// output stream (the scrollback first), and the pty takes the smallest viewer's size.

import { FitAddon } from "@xterm/addon-fit";
import { Terminal } from "@xterm/xterm";
import { ApiError } from "../api/ws";
import { session } from "../session";
import { h, replace } from "../ui/dom";
import { currentTheme } from "../ui/theme";
import type { DocView } from "./open";

interface Opened {
  terminal: string;
  scrollback: string;
  rows: number;
  cols: number;
}

const THEMES = {
  light: { background: "#fbfbfc", foreground: "#1c2024", cursor: "#5b5bd6", selectionBackground: "#5b5bd633", black: "#1c2024", brightBlack: "#60646c" },
  dark: { background: "#111113", foreground: "#edeef0", cursor: "#9b9ef0", selectionBackground: "#9b9ef044", black: "#111113", brightBlack: "#8b8d98" },
};

export function openTerminal(host: HTMLElement, projectId: string, path: string): DocView {
  const { client } = session();
  const status = h("span", { class: "muted small", "data-testid": "terminal-status" }, "Starting…");
  const screen = h("div", { class: "terminal", "data-testid": "terminal" });
  replace(host, h("div", { class: "doc term-doc" },
    h("div", { class: "doc-toolbar" }, h("span", { class: "doc-path" }, path), status),
    screen));
  const term = new Terminal({
    fontFamily: getComputedStyle(document.documentElement).getPropertyValue("--mono") || "monospace",
    fontSize: 13,
    cursorBlink: true,
    scrollback: 5000,
    theme: THEMES[currentTheme()],
    allowProposedApi: false,
  });
  const fit = new FitAddon();
  term.loadAddon(fit);
  term.open(screen);
  fit.fit();
  let id: string | null = null;
  let off: (() => void) | null = null;
  let exited = false;
  let destroyed = false;

  const open = async () => {
    try {
      const res = await client.call<Opened>("terminal.open", { project_id: projectId, path, rows: term.rows, cols: term.cols });
      if (destroyed) return;
      off?.();
      id = res.terminal;
      exited = false;
      term.reset();
      term.write(res.scrollback);
      status.textContent = `Shared terminal · ${res.cols}×${res.rows}`;
      off = client.onTerminal(res.terminal, (m) => {
        if (m.data !== undefined) term.write(m.data);
        if (m.exit !== undefined) {
          exited = true;
          status.textContent = `Exited (${m.exit}) · press Enter to start a new shell`;
          term.write(`\r\n\x1b[2m[process exited with code ${m.exit}]\x1b[0m\r\n`);
        }
      });
    } catch (err) {
      status.textContent = err instanceof ApiError ? err.message : "Could not open the terminal";
    }
  };
  term.onData((data) => {
    if (exited) {
      if (data === "\r") void open();
      return;
    }
    if (id) send(data);
  });
  // The server runs a connection's calls concurrently, so keystrokes go one call at a
  // time, in order; what is typed meanwhile is batched into the next call.
  let queued = "";
  let sending = false;
  const send = (data: string) => {
    queued += data;
    if (sending) return;
    const flush = async () => {
      sending = true;
      while (queued && !destroyed) {
        const chunk = queued.slice(0, 65536);
        queued = queued.slice(chunk.length);
        await client.call("terminal.input", { project_id: projectId, path, data: chunk }).catch(() => undefined);
      }
      sending = false;
    };
    void flush();
  };
  let resizeTimer: number | undefined;
  const observer = new ResizeObserver(() => {
    clearTimeout(resizeTimer);
    resizeTimer = window.setTimeout(() => {
      fit.fit();
      if (id) client.call("terminal.resize", { project_id: projectId, path, rows: term.rows, cols: term.cols }).catch(() => undefined);
    }, 100);
  });
  observer.observe(screen);
  const onTheme = () => { term.options.theme = THEMES[currentTheme()]; };
  window.addEventListener("collab:theme", onTheme);
  // After a reconnect the server has forgotten this viewer: open again, from the scrollback.
  const offConnect = client.onConnect(() => { if (id) void open(); });
  void open();
  term.focus();
  return {
    destroy: () => {
      destroyed = true;
      off?.();
      offConnect();
      observer.disconnect();
      window.removeEventListener("collab:theme", onTheme);
      if (id) client.call("terminal.close", { project_id: projectId, path }).catch(() => undefined);
      term.dispose();
    },
  };
}
