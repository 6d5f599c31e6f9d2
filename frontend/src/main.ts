// The app's entry: pick the screen for the URL, after finding out who is signed in.

import "./app.css";
import { navigate, onNavigate, parse } from "./router";
import { accountScreen } from "./screens/account";
import { authScreen } from "./screens/auth";
import { ProjectScreen } from "./screens/project";
import { projectsScreen } from "./screens/projects";
import { prefetch, startsText } from "./editors/open";
import { preload } from "./preload";
import { loadSession } from "./session";
import { h, replace } from "./ui/dom";
import { applyTheme } from "./ui/theme";

applyTheme();
performance.mark("collab:main");
// A deep link to a document: fetch its editor while the session is checked.
let first: ReturnType<typeof parse> | null = parse(new URL(location.href));
if (first.name === "project" && first.path) { prefetch(first.path); preload("editors/yjs"); }
const root = document.getElementById("app")!;
let cleanup: (() => void) | null = null;
let project: ProjectScreen | null = null;

async function render(): Promise<void> {
  const route = parse(new URL(location.href));
  const signedIn = await loadSession();
  if (!signedIn && route.name !== "signin" && route.name !== "signup") {
    const next = location.pathname + location.search;
    navigate(`/signin${next !== "/" ? `?next=${encodeURIComponent(next)}` : ""}`, true);
    return;
  }
  if (signedIn && route.name === "project" && route.path && first?.name === "project" && first.path === route.path && startsText(route.path)) {
    // The deep link's document: its local copy and /yjs connection open while the
    // editor's code is still loading (editors/yjs.ts is a small part of it).
    void import("./editors/yjs").then((m) => m.prewarm(route.projectId, route.path!));
  }
  first = null;
  if (route.name === "project" && project?.projectId === route.projectId) {
    project.update(route.path);
    return;
  }
  cleanup?.();
  cleanup = null;
  project = null;
  document.title = "collab";
  switch (route.name) {
    case "signin":
    case "signup":
      if (signedIn) return navigate(route.next, true);
      replace(root, authScreen(route.name, route.next));
      document.title = route.name === "signin" ? "Sign in · collab" : "Sign up · collab";
      break;
    case "projects": {
      const screen = projectsScreen();
      cleanup = screen.cleanup;
      replace(root, screen.el);
      document.title = "Projects · collab";
      break;
    }
    case "account":
      replace(root, accountScreen());
      document.title = "Account · collab";
      break;
    case "project":
      project = new ProjectScreen(route.projectId, route.path);
      cleanup = () => project?.cleanup();
      replace(root, project.el);
      break;
    default:
      replace(root, h("div", { class: "empty" }, h("h2", null, "Page not found"), h("a", { href: "/projects", class: "btn" }, "Your projects")));
  }
}

// The service worker keeps the app shell, so a page reloaded offline still opens. It
// caches every asset when installed, so it waits until the first screen is up.
if ("serviceWorker" in navigator)
  window.addEventListener("load", () => setTimeout(() => void navigator.serviceWorker.register("/sw.js").catch(() => undefined), 2000));

window.addEventListener("collab:unauthenticated", () => navigate("/signin", true));
onNavigate(() => void render());
void render();
