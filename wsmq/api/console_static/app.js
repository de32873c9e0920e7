// The console's shell: sign-in, hash routing, the 5-second refresh and the theme.

import { api, ApiError, session } from "./api.js";
import { h, replace, say, clock } from "./ui.js";
import * as queuesView from "./queues.js";
import * as queueView from "./queue.js";
import * as nodesView from "./nodes.js";
import * as usersView from "./users.js";

const REFRESH_MS = 5000;
const THEME = "wsmq.console.theme"; // only the theme choice is remembered across tabs

const $ = (id) => document.getElementById(id);
const state = { me: null, view: null, timer: 0, paused: false, busy: null, failing: false };

// -- theme ----------------------------------------------------------------------------------

const systemDark = window.matchMedia("(prefers-color-scheme: dark)");
function effectiveTheme() {
  return localStorage.getItem(THEME) || (systemDark.matches ? "dark" : "light");
}
function applyTheme() {
  const theme = effectiveTheme();
  document.documentElement.dataset.theme = theme;
  const btn = $("theme-toggle");
  btn.setAttribute("aria-pressed", String(theme === "dark")); // the label stays "Dark mode"
}
$("theme-toggle").addEventListener("click", () => {
  localStorage.setItem(THEME, effectiveTheme() === "dark" ? "light" : "dark");
  applyTheme();
});
systemDark.addEventListener("change", applyTheme);
applyTheme();

// -- sign-in --------------------------------------------------------------------------------

function describeLoginError(err) {
  if (err.code === "unauthorized") return "This API key was refused: it is unknown or has been revoked.";
  if (err.code === "rate_limited") return `Too many attempts: try again in ${err.retryAfter || "a few"} seconds.`;
  return `Could not sign in: ${err.message}`;
}

$("login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const input = $("api-key");
  const key = input.value.trim();
  const error = $("login-error");
  if (!key) {
    error.textContent = "Enter an API key.";
    input.setAttribute("aria-invalid", "true");
    input.focus();
    return;
  }
  try {
    const me = await api.me(key);
    if (!me.scopes.includes("read")) {
      throw new ApiError(403, "forbidden", "this key lacks the read scope the console needs");
    }
    session.key = key;
    input.value = "";
    error.textContent = "";
    input.removeAttribute("aria-invalid");
    signedIn(me);
  } catch (err) {
    error.textContent = describeLoginError(err);
    input.setAttribute("aria-invalid", "true");
    input.select();
  }
});

function signedIn(me) {
  state.me = me;
  $("login-view").hidden = true;
  $("nav").hidden = false;
  $("logout").hidden = false;
  $("refresh-box").hidden = false;
  const who = $("who");
  who.hidden = false;
  replace(who, h("span", { class: "muted" }, "Key "), h("strong", {}, me.name),
    ...me.scopes.map((s) => h("span", { class: "scope" }, s)));
  if (!location.hash || location.hash === "#" || location.hash === "#/login") location.hash = "#/queues";
  else route();
}

function signOut(message = "") {
  session.key = null;
  state.me = null;
  stopView();
  replace($("view"));
  $("nav").hidden = true;
  $("logout").hidden = true;
  $("refresh-box").hidden = true;
  $("who").hidden = true;
  $("login-view").hidden = false;
  $("login-error").textContent = message;
  history.replaceState(null, "", "#/login");
  document.title = "Sign in · wsmq console";
  $("api-key").focus();
}

$("logout").addEventListener("click", () => {
  signOut();
  say("Signed out. The key was removed from this tab.", "info");
});

// -- routing --------------------------------------------------------------------------------

function parseRoute() {
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  if (parts[0] === "queues" && parts[1]) {
    const arg = parts.slice(1).join("/");
    return { name: "queue", arg, section: "queues", title: `${arg} · Queues` };
  }
  if (parts[0] === "nodes") return { name: "nodes", section: "nodes", title: "Nodes" };
  if (parts[0] === "users") return { name: "users", section: "users", title: "Users" };
  return { name: "queues", section: "queues", title: "Queues" };
}

const VIEWS = { queues: queuesView, queue: queueView, nodes: nodesView, users: usersView };

function stopView() {
  clearTimeout(state.timer);
  if (state.view && state.view.destroy) state.view.destroy();
  state.view = null;
}

function route() {
  if (!state.me) return;
  const r = parseRoute();
  stopView();
  for (const a of document.querySelectorAll("#nav a")) {
    if (a.dataset.section === r.section) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  document.title = `${r.title} · wsmq console`;
  const container = replace($("view"));
  const ctx = { canAdmin: state.me.scopes.includes("admin"), refreshNow, guard };
  state.view = VIEWS[r.name].mount(container, ctx, r.arg);
  const heading = container.querySelector("h1");
  if (heading) { heading.tabIndex = -1; heading.focus({ preventScroll: true }); }
  refreshNow();
}

window.addEventListener("hashchange", () => {
  if (!state.me) { if (location.hash !== "#/login") history.replaceState(null, "", "#/login"); return; }
  route();
});

// -- refresh --------------------------------------------------------------------------------

function handleError(err) {
  if (err instanceof ApiError && err.code === "unauthorized") {
    signOut("Your API key is no longer accepted (revoked?). Sign in again.");
    say("Signed out: the key was refused.", "error");
    return;
  }
  if (err instanceof ApiError && err.code === "rate_limited") {
    say(`Rate limited by the node: retrying in ${err.retryAfter || "a few"} s.`, "error");
    return;
  }
  say(err.message || String(err), "error");
}

/** Run an operator's action; a refused key signs out (the caller still sees the error). */
async function guard(action) {
  try {
    return await action();
  } catch (err) {
    if (err instanceof ApiError && err.code === "unauthorized") handleError(err);
    throw err;
  }
}

async function refreshNow() {
  clearTimeout(state.timer);
  const view = state.view;
  if (!view) return;
  if (state.busy !== view) { // one refresh at a time per view; a new view need not wait
    state.busy = view;
    try {
      await view.refresh();
      if (view === state.view) {
        $("updated").textContent = `Updated ${clock(new Date())}`;
        if (state.failing) say("Back in touch with the node.", "ok");
        state.failing = false;
      }
    } catch (err) {
      if (view === state.view) {
        state.failing = true;
        handleError(err);
      }
    } finally {
      if (state.busy === view) state.busy = null;
    }
  }
  schedule();
}

function schedule() {
  clearTimeout(state.timer);
  if (!state.paused && state.view) state.timer = setTimeout(tick, REFRESH_MS);
}

function tick() {
  // A hidden tab does not poll (the key's rate limit is shared by every tab and node).
  if (document.hidden) { schedule(); return; }
  refreshNow();
}

$("refresh-toggle").addEventListener("click", () => {
  state.paused = !state.paused;
  const btn = $("refresh-toggle");
  btn.dataset.paused = String(state.paused);
  btn.textContent = state.paused ? "Resume updates" : "Pause updates"; // the label says what it does
  document.body.classList.toggle("paused", state.paused);
  say(state.paused ? "Automatic updates paused." : "Automatic updates resumed (every 5 s).", "info");
  if (state.paused) clearTimeout(state.timer);
  else refreshNow();
});
document.addEventListener("visibilitychange", () => {
  if (!document.hidden && !state.paused && state.view) refreshNow();
});

// "Skip to content" moves the focus without touching the hash (the hash is the route).
document.querySelector(".skip").addEventListener("click", (ev) => {
  ev.preventDefault();
  $("main").focus();
});

// -- start ----------------------------------------------------------------------------------

async function start() {
  const key = session.key;
  if (!key) { signOut(); return; }
  try {
    signedIn(await api.me(key));
  } catch (err) {
    signOut(err.code === "unauthorized" ? "Your API key is no longer accepted. Sign in again." : describeLoginError(err));
  }
}
start();
