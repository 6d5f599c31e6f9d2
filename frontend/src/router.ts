// Client-side routes over the History API; every route is also a server route, so a
// reload of any URL lands back on the same screen.

export type Route =
  | { name: "signin"; next: string }
  | { name: "signup"; next: string }
  | { name: "projects" }
  | { name: "account" }
  | { name: "project"; projectId: string; path: string | null }
  | { name: "notfound" };

export function parse(url: URL): Route {
  const p = url.pathname;
  const next = url.searchParams.get("next") ?? "/projects";
  if (p === "/signin") return { name: "signin", next };
  if (p === "/signup") return { name: "signup", next };
  if (p === "/" || p === "/projects" || p === "/projects/") return { name: "projects" };
  if (p === "/account") return { name: "account" };
  const m = p.match(/^\/projects\/([0-9a-f-]{36})(?:\/files\/(.+))?\/?$/);
  if (m) return { name: "project", projectId: m[1], path: m[2] ? decodeURIComponent(m[2]) : null };
  return { name: "notfound" };
}

export function fileUrl(projectId: string, path: string): string {
  return `/projects/${projectId}/files/${path.split("/").map(encodeURIComponent).join("/")}`;
}

let listener: (() => void) | null = null;

export function onNavigate(fn: () => void): void {
  listener = fn;
  window.addEventListener("popstate", fn);
  // Same-origin links navigate in place; modified clicks keep the browser's behaviour.
  document.addEventListener("click", (e) => {
    const a = (e.target as Element).closest?.("a");
    if (!a || a.target || a.hasAttribute("download") || e.metaKey || e.ctrlKey || e.shiftKey || e.button !== 0) return;
    const url = new URL(a.href, location.href);
    if (url.origin !== location.origin || url.pathname.startsWith("/api/") || url.pathname.startsWith("/raw/")) return;
    e.preventDefault();
    navigate(url.pathname + url.search);
  });
}

export function navigate(path: string, replace = false): void {
  if (replace) history.replaceState(null, "", path);
  else if (path !== location.pathname + location.search) history.pushState(null, "", path);
  listener?.();
}
