// Models page: champion / challenger / previous from GET /v1/registry; promote and roll back with the API key.
"use strict";

const METRIC_NAMES = {
  real_test_macro_f1: "real maps, test lots: macro-F1",
  real_test_min_recall: "real maps, test lots: lowest class recall",
  real_dev_macro_f1: "real maps, dev lots: macro-F1",
  test_macro_f1: "generated test split: macro-F1",
  test_accuracy: "generated test split: accuracy",
};

function rules(gate) {
  const entries = Object.entries(gate.rules || {});
  if (!entries.length) return null;
  return el(
    "table",
    { class: "rules" },
    entries.map(([name, text]) =>
      el("tr", {}, el("td", {}, name), el("td", { class: text.startsWith("PASS") ? "pass" : "fail" }, text))
    )
  );
}

function action(role) {
  if (!apiKey() || !role.version) return null;
  if (role.alias === "challenger" && role.served_as !== "champion") {
    return el("button", { class: "primary", id: "promote", onclick: () => act("promote", { version: role.version }) },
      `Promote version ${role.version} to champion`);
  }
  if (role.alias === "previous") {
    return el("button", { id: "rollback", onclick: () => act("rollback", {}) }, `Roll back to version ${role.version}`);
  }
  return null;
}

function roleCard(role) {
  if (!role.version) {
    return el("div", { class: "role", "data-alias": role.alias }, el("h2", {}, role.alias), el("p", { class: "muted" }, "none"));
  }
  const gate = role.gate;
  return el(
    "div",
    { class: "role", "data-alias": role.alias },
    el("h2", {}, `${role.alias}: version ${role.version}`, role.served_as ? el("span", { class: "muted" }, ` (serving as ${role.served_as})`) : null),
    el(
      "table",
      {},
      Object.entries(role.metrics).map(([k, v]) => el("tr", {}, el("td", {}, METRIC_NAMES[k] || k), el("td", {}, v.toFixed(4))))
    ),
    el("p", {}, "gate: ", el("strong", { class: "decision" }, gate.decision || "not gated"), gate.decided_at ? ` (${gate.decided_at})` : ""),
    gate.reason ? el("p", { class: "reason" }, gate.reason) : null,
    rules(gate),
    el("p", {}, el("a", { href: role.mlflow.version }, "version in MLflow"), role.mlflow.run ? [" · ", el("a", { href: role.mlflow.run }, "training run")] : null),
    action(role)
  );
}

async function act(what, payload) {
  const status = document.getElementById("status");
  showStatus(status, `${what} …`);
  try {
    const result = await postJson(`/v1/registry/${what}`, payload);
    showStatus(status, `${what}: champion is now version ${result.champion}; serving ${result.served}`, "ok");
  } catch (err) {
    showStatus(status, `${what} refused: ${err.message}`, "error");
    return;
  }
  await load(false);
}

async function load(announce = true) {
  const status = document.getElementById("status");
  let registry;
  try {
    registry = await api("/v1/registry");
  } catch (err) {
    showStatus(status, `registry not read: ${err.message}`, "error");
    return;
  }
  document.getElementById("mlflow").href = registry.mlflow_ui;
  const s = registry.shadow;
  document.getElementById("shadow").textContent = s.compared
    ? `Shadow: challenger agreed with the champion on ${s.agreed} of ${s.compared} live wafers (${(100 * s.agreement).toFixed(1)} %); ${s.shadowed} batches shadowed, ${s.dropped} dropped, ${s.failed} failed.`
    : "Shadow: no live wafer compared yet.";
  document.getElementById("roles").replaceChildren(...registry.roles.map(roleCard));
  document.getElementById("admin-note").hidden = Boolean(apiKey());
  if (announce) showStatus(status, `registered model ${registry.model}` + (registry.last_error ? `; ${registry.last_error}` : ""), registry.last_error ? "error" : "info");
}

document.addEventListener("DOMContentLoaded", () => {
  navBar("models");
  document.addEventListener("api-key-changed", () => load());
  load();
});
