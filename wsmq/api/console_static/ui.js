// DOM helpers, formatting, the status line, the confirm dialog and the inline SVG charts.

const SVG = "http://www.w3.org/2000/svg";

/** h("a", {href: "#/x", class: "y"}, "text", child) — text is always set as text, never HTML. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  for (const c of children) if (c) el.append(c);
  return el;
}

export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

// -- formatting -----------------------------------------------------------------------------

const nf = new Intl.NumberFormat();
export const num = (n) => (n === null || n === undefined ? "—" : nf.format(n));

export function duration(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  const s = Math.max(0, seconds);
  if (s < 1) return "<1 s";
  if (s < 60) return `${Math.floor(s)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.floor(s % 60)} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

export function rate(perMinute) {
  if (perMinute === null || perMinute === undefined) return "—";
  return perMinute >= 100 ? `${nf.format(Math.round(perMinute))}/min` : `${perMinute.toFixed(1)}/min`;
}

const dtf = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });
export const datetime = (epochSeconds) =>
  epochSeconds ? dtf.format(new Date(epochSeconds * 1000)) : "—";
export const clock = (date) => date.toLocaleTimeString();

// -- status line (aria-live) ----------------------------------------------------------------

let statusTimer = 0;
/** Announce `text` (kind: "ok" | "error" | "info"); errors stay until the next message. */
export function say(text, kind = "ok") {
  const box = document.getElementById("status");
  clearTimeout(statusTimer);
  box.dataset.kind = kind;
  replace(box, text ? h("span", {}, text) : null);
  box.classList.toggle("shown", Boolean(text));
  if (text && kind !== "error") statusTimer = setTimeout(() => say(""), 6000);
}

// -- confirmation dialog --------------------------------------------------------------------

/**
 * Ask before a change. With `typed`, the operator must type that text (the queue name) before
 * the confirm button enables. Resolves true on confirm, false on cancel/Escape.
 */
export function confirmAction({ title, text, confirm = "Confirm", typed = null, danger = true }) {
  const dialog = document.getElementById("confirm-dialog");
  const form = document.getElementById("confirm-form");
  const ok = document.getElementById("confirm-ok");
  const input = document.getElementById("confirm-input");
  const typedBox = document.getElementById("confirm-typed");
  replace(document.getElementById("confirm-title"), title);
  replace(document.getElementById("confirm-text"), text);
  ok.textContent = confirm;
  ok.className = danger ? "btn btn-danger" : "btn btn-primary";
  typedBox.hidden = !typed;
  input.value = "";
  if (typed) {
    replace(document.getElementById("confirm-label"), "Type ", h("strong", {}, typed), " to confirm");
  }
  const check = () => { ok.disabled = Boolean(typed) && input.value !== typed; };
  check();
  return new Promise((resolve) => {
    let result = false;
    const onInput = () => check();
    const onSubmit = (ev) => {
      if (ok.disabled) { ev.preventDefault(); return; }
      result = true;
    };
    const onCancel = () => dialog.close();
    const onClose = () => {
      input.removeEventListener("input", onInput);
      form.removeEventListener("submit", onSubmit);
      document.getElementById("confirm-cancel").removeEventListener("click", onCancel);
      dialog.removeEventListener("close", onClose);
      resolve(result);
    };
    input.addEventListener("input", onInput);
    form.addEventListener("submit", onSubmit);
    document.getElementById("confirm-cancel").addEventListener("click", onCancel);
    dialog.addEventListener("close", onClose);
    dialog.showModal();
    (typed ? input : document.getElementById("confirm-cancel")).focus();
  });
}

// -- charts ---------------------------------------------------------------------------------

/** A small line of `values` (numbers), `label` for screen readers. */
export function sparkline(values, label, { width = 120, height = 28 } = {}) {
  const box = svg("svg", {
    viewBox: `0 0 ${width} ${height}`, width, height, class: "spark", role: "img",
    "aria-label": label,
  });
  box.append(svg("title", {}, document.createTextNode(label)));
  if (values.length < 2) {
    box.append(svg("line", { x1: 0, y1: height - 1.5, x2: width, y2: height - 1.5, class: "spark-base" }));
    return box;
  }
  const max = Math.max(1, ...values);
  const step = width / (values.length - 1);
  const pts = values.map((v, i) => [i * step, height - 2 - (v / max) * (height - 4)]);
  const d = pts.map(([x, y], i) => `${i ? "L" : "M"}${x.toFixed(1)},${y.toFixed(1)}`).join("");
  box.append(svg("path", { d: `${d}L${width},${height}L0,${height}Z`, class: "spark-fill" }));
  box.append(svg("path", { d, class: "spark-line" }));
  return box;
}

/**
 * A line chart of several series over time: series = [{name, cls, points: [[t, v], ...]}].
 * Drawn in a 600x180 viewBox that scales with its container.
 */
export function lineChart(series, { label, unit = "", empty = "No data yet." } = {}) {
  const W = 600, H = 180, L = 44, R = 8, T = 10, B = 24;
  const all = series.flatMap((s) => s.points);
  const figure = h("figure", { class: "chart" });
  if (all.length < 2) {
    figure.append(h("p", { class: "muted chart-empty" }, empty));
    return figure;
  }
  const t0 = Math.min(...all.map((p) => p[0]));
  const t1 = Math.max(...all.map((p) => p[0]));
  const step = niceStep(Math.max(1, ...all.map((p) => p[1])) / 4);
  const max = step * 4;
  const span = t1 - t0 || 1;
  const x = (t) => L + ((t - t0) / span) * (W - L - R);
  const y = (v) => T + (1 - v / max) * (H - T - B);
  const box = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": label, class: "chart-svg" });
  box.append(svg("title", {}, document.createTextNode(label)));
  for (let i = 0; i <= 4; i++) {
    const v = step * i;
    box.append(svg("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "grid" }));
    box.append(svg("text", { x: L - 6, y: y(v) + 4, class: "axis", "text-anchor": "end" },
      document.createTextNode(shortNum(v))));
  }
  const clockParts = span < 120 ? { hour: "2-digit", minute: "2-digit", second: "2-digit" } : { hour: "2-digit", minute: "2-digit" };
  const fmtT = (t) => new Date(t * 1000).toLocaleTimeString([], clockParts);
  box.append(svg("text", { x: L, y: H - 6, class: "axis" }, document.createTextNode(fmtT(t0))));
  box.append(svg("text", { x: W - R, y: H - 6, class: "axis", "text-anchor": "end" },
    document.createTextNode(fmtT(t1))));
  for (const s of series) {
    if (s.points.length < 1) continue;
    const d = s.points.map(([t, v], i) => `${i ? "L" : "M"}${x(t).toFixed(1)},${y(v).toFixed(1)}`).join("");
    box.append(svg("path", { d, class: `series ${s.cls}` }));
  }
  figure.append(box);
  const legend = h("figcaption", { class: "legend" },
    series.map((s) => h("span", { class: `key ${s.cls}` }, s.name)),
    unit ? h("span", { class: "muted" }, unit) : null);
  figure.append(legend);
  return figure;
}

// The grid's step: 1, 2, 2.5 or 5 times a power of ten, and whole numbers (counts) below 1.
function niceStep(v) {
  if (v <= 1) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

function shortNum(v) {
  if (v >= 1e6) return `${+(v / 1e6).toFixed(1)}M`;
  if (v >= 1e3) return `${+(v / 1e3).toFixed(1)}k`;
  return `${+v.toFixed(1)}`;
}

/** A figure on a card: label, value, an optional line below; `name` marks it for tests. */
export function stat(label, value, sub = "", { name = null, tone = null } = {}) {
  return h("div", { class: `card stat${tone ? ` tone-${tone}` : ""}`, "data-stat": name },
    h("div", { class: "stat-label" }, label),
    h("div", { class: "stat-value" }, value),
    sub ? h("div", { class: "stat-sub muted" }, sub) : null);
}

/** A labelled number field (optional value: empty means "leave as is" / default). */
export function field(id, label, { value = "", type = "number", min, hint, placeholder } = {}) {
  return h("div", { class: "field" },
    h("label", { for: id }, label),
    h("input", {
      id, name: id, type, value: value ?? "", min, placeholder, inputmode: type === "number" ? "numeric" : null,
      "aria-describedby": hint ? `${id}-hint` : null,
    }),
    hint ? h("small", { id: `${id}-hint`, class: "muted" }, hint) : null);
}

/**
 * Run `render` (which rebuilds part of the page) and give the focus back to the element with
 * the same data-focus-id: an auto-refresh must not yank a keyboard user's focus away.
 */
export function keepFocus(render) {
  const active = document.activeElement;
  const id = active && active.dataset ? active.dataset.focusId : undefined;
  render();
  if (id && !document.activeElement?.dataset?.focusId) {
    const again = document.querySelector(`[data-focus-id="${CSS.escape(id)}"]`);
    if (again) again.focus({ preventScroll: true });
  }
}
