"""Security headers of the app's HTML pages and of raw project files."""

from __future__ import annotations

from collab.config import Settings


def app_csp(settings: Settings) -> str:
    # No 'unsafe-eval' and no inline script; inline style attributes are needed by
    # CodeMirror and xterm.js, which position elements with style attributes.
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data: blob:",
            "font-src 'self' data:",
            "connect-src 'self'",
            "frame-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            f"frame-ancestors {settings.web_frame_ancestors}",
        ]
    )


def html_headers(settings: Settings) -> dict[str, str]:
    return {
        "Content-Security-Policy": app_csp(settings),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "Cache-Control": "no-cache",
        "Cross-Origin-Opener-Policy": "same-origin",
    }


# Raw files are user content served from the app's origin: the sandbox directive gives the
# response an opaque origin with scripts off, so an uploaded .html or .svg cannot act as
# the signed-in user; nosniff stops a text file from being run as a script elsewhere.
RAW_CSP = (
    "sandbox; default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; media-src 'self'"
)


def raw_headers() -> dict[str, str]:
    return {
        "Content-Security-Policy": RAW_CSP,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "private, no-cache",
        "Cross-Origin-Resource-Policy": "same-origin",
    }
