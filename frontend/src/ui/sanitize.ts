// Untrusted HTML and SVG (notebook outputs, markdown from any collaborator) into inert DOM:
// DOMPurify with one configuration for the whole app, so no script runs in the app's origin
// and no content can reach outside the box it is shown in (see app.css `.untrusted`).

import DOMPurify from "dompurify";

// DOMPurify's default list of URL schemes, and `attachment:` (notebook cell attachments).
const SAFE_URI = /^(?:(?:(?:f|ht)tps?|mailto|tel|attachment):|[^a-z]|[a-z+.\-]+(?:[^a-z+.\-:]|$))/i;

let hooked = false;

function hook(): void {
  if (hooked) return;
  hooked = true;
  DOMPurify.addHook("afterSanitizeAttributes", (node) => {
    // Links open in a new tab, for HTML and SVG alike (SVG's `target` is read-only as a
    // property, so attributes, not properties).
    if (node.nodeName.toLowerCase() === "a" && node.hasAttribute("href")) {
      node.setAttribute("target", "_blank");
      node.setAttribute("rel", "noopener noreferrer");
    }
  });
}

/** Sanitised HTML (or SVG with `svg`) as a fragment: no script, no style sheets, no forms,
 * ids and names prefixed so they cannot shadow the app's own elements. */
export function sanitize(markup: string, options: { svg?: boolean } = {}): DocumentFragment {
  hook();
  return DOMPurify.sanitize(markup, {
    RETURN_DOM_FRAGMENT: true,
    ALLOWED_URI_REGEXP: SAFE_URI,
    FORBID_TAGS: ["style", "form", "link", "meta", "base"],
    SANITIZE_NAMED_PROPS: true,
    ...(options.svg ? { USE_PROFILES: { svg: true, svgFilters: true } } : {}),
  });
}
