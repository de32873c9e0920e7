// The users page: end a user's sessions by id (its sockets close with 4403 on every node).

import { api } from "./api.js";
import { h, say, confirmAction } from "./ui.js";

const done = []; // revocations made from this tab, newest first

export function mount(container, ctx) {
  const log = h("ul", { class: "revocations" });
  const emptyLog = h("p", { class: "muted" }, "Nothing yet.");
  const input = h("input", {
    id: "revoke-id", type: "text", autocomplete: "off", spellcheck: "false", required: true,
    "aria-describedby": "revoke-hint revoke-error",
  });
  const error = h("p", { id: "revoke-error", class: "field-error", role: "alert" });
  const form = h("form", { class: "card panel revoke-form", novalidate: true, "aria-labelledby": "revoke-title" },
    h("h2", { id: "revoke-title" }, "Revoke a user's sessions"),
    h("p", { id: "revoke-hint", class: "muted" },
      "Every node closes the user's WebSocket connections at once (close code 4403) and its access token stops working: the user has to log in again. The user id is the one in the user store (",
      h("code", {}, "wsmq user list"), ")."),
    h("div", { class: "field" }, h("label", { for: "revoke-id" }, "User id"), input),
    error,
    h("div", { class: "actions" },
      h("button", { type: "submit", class: "btn btn-danger", disabled: !ctx.canAdmin }, "Revoke sessions…")),
    ctx.canAdmin ? null : h("p", { class: "muted" }, "Revoking needs a key with the admin scope."));

  function renderLog() {
    log.replaceChildren(...done.map((r) => h("li", {},
      h("code", {}, r.userId), ` revoked at ${r.at.toLocaleTimeString()}; ${r.nodes} node(s) told.`)));
    emptyLog.hidden = done.length > 0;
  }

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const id = input.value.trim();
    if (!id) { error.textContent = "Enter a user id."; input.focus(); return; }
    const ok = await confirmAction({
      title: "Revoke sessions", confirm: "Revoke",
      text: `Close every connection of user ${id} and revoke its access token?`,
    });
    if (!ok) return;
    try {
      const res = await ctx.guard(() => api.revoke(id));
      error.textContent = "";
      input.value = "";
      done.unshift({ ...res, at: new Date() });
      renderLog();
      say(`Sessions of user ${res.userId} revoked (${res.nodes} node(s) told).`);
    } catch (err) {
      error.textContent = err.code === "user_not_found" ? `No user with id ${id}.` : `Revoke failed: ${err.message}`;
      input.focus();
    }
  });

  container.append(
    h("div", { class: "page-head" }, h("h1", {}, "Users")),
    form,
    h("section", { class: "card", "aria-labelledby": "recent-title" },
      h("h2", { id: "recent-title" }, "Revoked from this tab"), log,
      emptyLog));
  renderLog();
  return { async refresh() {} };
}
