// Light and dark themes: the system's choice unless the user picked one.

const KEY = "collab:theme";

export type Theme = "light" | "dark";

export function currentTheme(): Theme {
  const saved = localStorage.getItem(KEY);
  if (saved === "light" || saved === "dark") return saved;
  return matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
}

export function applyTheme(theme: Theme = currentTheme()): void {
  document.documentElement.dataset.theme = theme;
  window.dispatchEvent(new CustomEvent("collab:theme", { detail: theme }));
}

export function toggleTheme(): void {
  const next: Theme = currentTheme() === "dark" ? "light" : "dark";
  localStorage.setItem(KEY, next);
  applyTheme(next);
}

matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => applyTheme());
