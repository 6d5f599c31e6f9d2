// Sign in and sign up.

import { signIn, signUp } from "../api/http";
import { ApiError } from "../api/ws";
import { navigate } from "../router";
import { startSession } from "../session";
import { h } from "../ui/dom";

export function authScreen(mode: "signin" | "signup", next: string): HTMLElement {
  const email = h("input", { class: "input", type: "email", name: "email", autocomplete: "email", required: true, id: "email" });
  const password = h("input", { class: "input", type: "password", name: "password", autocomplete: mode === "signin" ? "current-password" : "new-password", required: true, minlength: 8, id: "password" });
  const name = h("input", { class: "input", type: "text", name: "name", autocomplete: "name", id: "name" });
  const error = h("p", { class: "form-error", role: "alert" });
  const submit = h("button", { class: "btn btn-primary btn-block", type: "submit" }, mode === "signin" ? "Sign in" : "Create account");
  const nextQuery = next !== "/projects" ? `?next=${encodeURIComponent(next)}` : "";
  const form = h("form", {
    class: "auth-form",
    onsubmit: async (e: Event) => {
      e.preventDefault();
      error.textContent = "";
      submit.disabled = true;
      try {
        const account = mode === "signin"
          ? await signIn(email.value, password.value)
          : await signUp(email.value, password.value, name.value);
        startSession(account);
        navigate(next.startsWith("/") && !next.startsWith("//") ? next : "/projects", true);
      } catch (err) {
        error.textContent = err instanceof ApiError ? err.message : "Something went wrong; try again.";
        submit.disabled = false;
      }
    },
  },
    mode === "signup" ? h("label", { class: "field", for: "name" }, h("span", null, "Name"), name) : null,
    h("label", { class: "field", for: "email" }, h("span", null, "Email"), email),
    h("label", { class: "field", for: "password" }, h("span", null, "Password"), password),
    mode === "signup" ? h("p", { class: "hint" }, "At least 8 characters.") : null,
    error,
    submit);
  setTimeout(() => (mode === "signup" ? name : email).focus());
  return h("div", { class: "auth" },
    h("div", { class: "auth-card" },
      h("div", { class: "auth-brand" }, h("span", { class: "logo logo-lg" }), h("span", null, "collab")),
      h("h1", null, mode === "signin" ? "Sign in" : "Create your account"),
      h("p", { class: "muted" }, mode === "signin" ? "Notebooks, documents and terminals, together in real time." : "Free, open source, and yours to host."),
      form,
      h("p", { class: "auth-switch muted" },
        mode === "signin" ? "New here? " : "Already have an account? ",
        h("a", { href: (mode === "signin" ? "/signup" : "/signin") + nextQuery }, mode === "signin" ? "Create an account" : "Sign in"))));
}
