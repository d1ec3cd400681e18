// Shared by the pages: the navigation bar, the API key, calls to the JSON API, safe DOM building.
"use strict";

const KEY_STORE = "waferflow-api-key";

function apiKey() {
  return sessionStorage.getItem(KEY_STORE) || "";
}

// Element with attributes and children; text always goes in as text, never as HTML.
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// The API's reason for a refused call: FastAPI's "detail" (a string or an object with "message").
function reasonOf(status, body) {
  const detail = body && body.detail;
  if (typeof detail === "string") return detail;
  if (detail && detail.message) return detail.message;
  if (Array.isArray(detail)) return detail.map((d) => `${(d.loc || []).join(".")}: ${d.msg}`).join("; ");
  return `HTTP ${status}`;
}

class ApiError extends Error {
  constructor(status, body) {
    super(reasonOf(status, body));
    this.status = status;
    this.body = body;
  }
}

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (apiKey()) headers["X-API-Key"] = apiKey();
  const response = await fetch(path, Object.assign({}, options, { headers }));
  const type = response.headers.get("content-type") || "";
  const body = type.includes("application/json") ? await response.json() : await response.text();
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

async function apiBlob(path) {
  const response = await fetch(path, { headers: apiKey() ? { "X-API-Key": apiKey() } : {} });
  if (!response.ok) {
    const type = response.headers.get("content-type") || "";
    throw new ApiError(response.status, type.includes("application/json") ? await response.json() : null);
  }
  return response.blob();
}

function postJson(path, payload) {
  return api(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(payload),
  });
}

function download(name, text, type) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const link = el("a", { href: url, download: name });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

function showStatus(node, message, kind = "info") {
  node.className = `status ${kind}`;
  node.textContent = message;
}

// The bar on top of every page: the three pages, and the API key (kept for this browser tab only).
function navBar(current) {
  const pages = [
    ["predict", "Predict"],
    ["review", "Review queue"],
    ["models", "Models"],
  ];
  const key = el("input", {
    id: "api-key",
    type: "password",
    placeholder: "API key",
    autocomplete: "off",
    value: apiKey(),
    title: "Sent as X-API-Key: needed off loopback, and for promote / rollback",
  });
  key.addEventListener("change", () => {
    sessionStorage.setItem(KEY_STORE, key.value.trim());
    document.dispatchEvent(new Event("api-key-changed"));
  });
  const bar = el(
    "nav",
    {},
    el("strong", {}, "waferflow"),
    pages.map(([page, title]) =>
      el("a", { href: `/ui/${page}.html`, class: page === current ? "current" : null }, title)
    ),
    el("span", { class: "spacer" }),
    el("a", { href: "/docs" }, "API docs"),
    key
  );
  document.body.prepend(bar);
}
