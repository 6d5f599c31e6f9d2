// ANSI SGR colour codes (as kernels print them in tracebacks and coloured output) to
// spans; every other escape sequence is dropped. Text only: nothing is parsed as HTML.

const NAMES = ["black", "red", "green", "yellow", "blue", "magenta", "cyan", "white"];

interface Style {
  fg: string | null;
  bg: string | null;
  bold: boolean;
  italic: boolean;
  underline: boolean;
}

function colour256(n: number): string {
  if (n < 16) return `var(--ansi-${n >= 8 ? "bright-" : ""}${NAMES[n % 8]})`;
  if (n >= 232) {
    const v = 8 + (n - 232) * 10;
    return `rgb(${v},${v},${v})`;
  }
  const c = n - 16;
  const level = (x: number) => (x === 0 ? 0 : 55 + x * 40);
  return `rgb(${level(Math.floor(c / 36))},${level(Math.floor(c / 6) % 6)},${level(c % 6)})`;
}

function apply(style: Style, codes: number[]): void {
  for (let i = 0; i < codes.length; i++) {
    const c = codes[i]!;
    if (c === 0) Object.assign(style, { fg: null, bg: null, bold: false, italic: false, underline: false });
    else if (c === 1) style.bold = true;
    else if (c === 3) style.italic = true;
    else if (c === 4) style.underline = true;
    else if (c === 22) style.bold = false;
    else if (c === 23) style.italic = false;
    else if (c === 24) style.underline = false;
    else if (c >= 30 && c <= 37) style.fg = `var(--ansi-${NAMES[c - 30]})`;
    else if (c >= 90 && c <= 97) style.fg = `var(--ansi-bright-${NAMES[c - 90]})`;
    else if (c === 39) style.fg = null;
    else if (c >= 40 && c <= 47) style.bg = `var(--ansi-${NAMES[c - 40]})`;
    else if (c >= 100 && c <= 107) style.bg = `var(--ansi-bright-${NAMES[c - 100]})`;
    else if (c === 49) style.bg = null;
    else if ((c === 38 || c === 48) && codes[i + 1] === 5) {
      const v = colour256(codes[i + 2] ?? 0);
      if (c === 38) style.fg = v;
      else style.bg = v;
      i += 2;
    } else if ((c === 38 || c === 48) && codes[i + 1] === 2) {
      const v = `rgb(${codes[i + 2] ?? 0},${codes[i + 3] ?? 0},${codes[i + 4] ?? 0})`;
      if (c === 38) style.fg = v;
      else style.bg = v;
      i += 4;
    }
  }
}

// CSI sequences (colours and the rest), OSC sequences, and lone escapes.
const ESCAPE = /\x1b\[([0-9;?]*)([A-Za-z])|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b./g;

export function ansiToFragment(text: string): DocumentFragment {
  const out = document.createDocumentFragment();
  const style: Style = { fg: null, bg: null, bold: false, italic: false, underline: false };
  let last = 0;
  const emit = (chunk: string) => {
    if (!chunk) return;
    if (!style.fg && !style.bg && !style.bold && !style.italic && !style.underline) {
      out.append(chunk);
      return;
    }
    const span = document.createElement("span");
    span.textContent = chunk;
    if (style.fg) span.style.color = style.fg;
    if (style.bg) span.style.backgroundColor = style.bg;
    if (style.bold) span.style.fontWeight = "700";
    if (style.italic) span.style.fontStyle = "italic";
    if (style.underline) span.style.textDecoration = "underline";
    out.append(span);
  };
  for (const m of text.matchAll(ESCAPE)) {
    emit(text.slice(last, m.index));
    last = m.index + m[0].length;
    if (m[2] === "m") apply(style, (m[1] || "0").split(";").map((x) => Number(x) || 0));
  }
  emit(text.slice(last));
  return out;
}

export function stripAnsi(text: string): string {
  return text.replace(ESCAPE, "");
}
