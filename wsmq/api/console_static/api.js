// The console's only door to the node: fetch() against ../api/ with the Bearer key.

const KEY = "wsmq.console.key";
export const API_BASE = new URL("../api/", document.baseURI).href;

/** An API failure: `code` is the API's `error` field ("unauthorized", "queueNotFound", ...). */
export class ApiError extends Error {
  constructor(status, code, message, retryAfter = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

// sessionStorage only: the key dies with the tab, never lands in localStorage or a cookie.
export const session = {
  get key() { return sessionStorage.getItem(KEY); },
  set key(value) {
    if (value) sessionStorage.setItem(KEY, value);
    else sessionStorage.removeItem(KEY);
  },
};

export async function call(method, path, { body, query, key } = {}) {
  const url = new URL(path.replace(/^\//, ""), API_BASE);
  for (const [k, v] of Object.entries(query || {})) url.searchParams.set(k, String(v));
  const headers = { Authorization: `Bearer ${key ?? session.key ?? ""}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let resp;
  try {
    resp = await fetch(url, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
      credentials: "omit",
    });
  } catch (err) {
    throw new ApiError(0, "network", "The node does not answer (network error).");
  }
  let data = null;
  try { data = await resp.json(); } catch { /* not JSON: handled below */ }
  if (!resp.ok) {
    const code = (data && data.error) || `http_${resp.status}`;
    const message = (data && data.message) || `${resp.status} ${resp.statusText}`;
    throw new ApiError(resp.status, code, message, resp.headers.get("Retry-After"));
  }
  return data;
}

export const q = encodeURIComponent;
export const api = {
  me: (key) => call("GET", "me", { key }),
  queues: () => call("GET", "queues"),
  queue: (name) => call("GET", `queues/${q(name)}`),
  rates: (name) => call("GET", `queues/${q(name)}/rates`),
  peek: (name, n) => call("GET", `queues/${q(name)}/messages`, { query: { peek: n } }),
  create: (name, attrs) => call("PUT", `queues/${q(name)}`, { body: attrs }),
  update: (name, attrs) => call("PATCH", `queues/${q(name)}`, { body: attrs }),
  remove: (name) => call("DELETE", `queues/${q(name)}`, { query: { confirm: name } }),
  purge: (name) => call("POST", `queues/${q(name)}/purge`, { query: { confirm: name }, body: {} }),
  redrive: (name, body) => call("POST", `queues/${q(name)}/redrive`, { body }),
  nodes: () => call("GET", "nodes"),
  revoke: (id) => call("POST", `users/${q(id)}/revoke`, { body: {} }),
};
