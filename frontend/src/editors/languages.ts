// The language extension for a file, by its name.

import { StreamLanguage } from "@codemirror/language";
import type { Extension } from "@codemirror/state";

export async function languageFor(path: string): Promise<Extension> {
  const name = path.toLowerCase();
  if (name.endsWith(".py")) return (await import("@codemirror/lang-python")).python();
  if (name.endsWith(".md") || name.endsWith(".markdown")) return (await import("@codemirror/lang-markdown")).markdown();
  if (name.endsWith(".json") || name.endsWith(".ipynb")) return (await import("@codemirror/lang-json")).json();
  if (name.endsWith(".yaml") || name.endsWith(".yml")) return (await import("@codemirror/lang-yaml")).yaml();
  if (/\.(sh|bash|zsh)$/.test(name) || name.endsWith(".bashrc") || name.endsWith(".profile")) {
    const { shell } = await import("@codemirror/legacy-modes/mode/shell");
    return StreamLanguage.define(shell);
  }
  if (/\.(tex|sty|cls|ltx)$/.test(name)) {
    const { stex } = await import("@codemirror/legacy-modes/mode/stex");
    return StreamLanguage.define(stex);
  }
  return [];
}
