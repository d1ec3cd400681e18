// Predict page: map files -> POST /v1/predict?images=true -> a card per wafer.
"use strict";

let chosen = [];
let last = null;

function triageBadge(triage) {
  // PASS / REVIEW / REJECT of the open-set triage, with its reason on hover and below.
  if (!triage) return el("div", { class: "muted" }, "no triage (an export without a novelty head)");
  return el(
    "div",
    { class: "triage" },
    el("span", { class: `badge ${triage.decision.toLowerCase()}`, title: triage.reason }, triage.decision),
    el("span", { class: "muted" }, ` ${triage.reason}`)
  );
}

// "why?": the explanation picture of this wafer (POST /v1/explain with the chosen files).
async function explainWafer(wafer, button, box) {
  const form = new FormData();
  for (const file of chosen) form.append("files", file, file.name);
  const query = new URLSearchParams({ lot_id: wafer.lot_id, wafer_id: wafer.wafer_id });
  button.disabled = true;
  showStatus(box, "explaining …");
  try {
    const response = await fetch(`/v1/explain?${query}`, {
      method: "POST",
      body: form,
      headers: apiKey() ? { "X-API-Key": apiKey() } : {},
    });
    if (!response.ok) throw new ApiError(response.status, await response.json().catch(() => null));
    const url = URL.createObjectURL(await response.blob());
    box.className = "explanation";
    box.replaceChildren(el("img", { src: url, alt: `why ${wafer.class}: map, mask, class activation, novelty` }));
  } catch (err) {
    showStatus(box, `no explanation: ${err.message}`, "error");
  } finally {
    button.disabled = false;
  }
}

// Similar past wafers of every card at once (POST /v1/similar); a missing index is said, not hidden.
async function similarWafers(form) {
  const boxes = document.querySelectorAll(".card .similar");
  try {
    const answer = await api("/v1/similar?k=5", { method: "POST", body: form });
    for (const w of answer.wafers) {
      const box = document.querySelector(`.card[data-wafer="${CSS.escape(`${w.lot_id}/${w.wafer_id}`)}"] .similar`);
      if (!box) continue;
      box.textContent =
        "similar past wafers: " + w.neighbours.map((n) => `${n.label} (${n.lot_id}/${n.wafer_id}, ${n.distance.toFixed(3)})`).join(", ");
    }
  } catch (err) {
    boxes.forEach((b) => (b.textContent = `similar past wafers: none (${err.message})`));
  }
}

function card(wafer) {
  const d = wafer.defects;
  const box = el("div", { class: "explanation", hidden: true });
  const why = el("button", { class: "why" }, "why?");
  why.addEventListener("click", () => {
    box.hidden = false;
    explainWafer(wafer, why, box);
  });
  return el(
    "div",
    { class: "card", "data-wafer": `${wafer.lot_id}/${wafer.wafer_id}` },
    el("img", { src: wafer.overlay_png, alt: `${wafer.lot_id}/${wafer.wafer_id} with its predicted defect mask` }),
    el("h2", { class: "predicted" }, `${wafer.class} · ${(100 * wafer.confidence).toFixed(1)} %`),
    triageBadge(wafer.triage),
    el("div", { class: "muted" }, `lot ${wafer.lot_id}, wafer ${wafer.wafer_id}`),
    el(
      "table",
      {},
      el("tr", {}, el("td", {}, "top 3"), el("td", {}, wafer.top_k.map((t) => `${t.class} ${t.probability.toFixed(2)}`).join(", "))),
      el("tr", {}, el("td", {}, "severity"), el("td", {}, d.severity)),
      el("tr", {}, el("td", {}, "novelty"), el("td", {}, wafer.triage ? `${wafer.triage.novelty} (p ${wafer.triage.novelty_p})` : "–")),
      el("tr", {}, el("td", {}, "clusters"), el("td", {}, d.clusters.length)),
      el("tr", {}, el("td", {}, "fail density"), el("td", {}, d.fail_density)),
      el("tr", {}, el("td", {}, "affected dies"), el("td", {}, d.affected_dies))
    ),
    el("div", { class: "similar muted" }, "similar past wafers: …"),
    why,
    box
  );
}

function choose(files) {
  chosen = Array.from(files);
  document.getElementById("predict").disabled = chosen.length === 0;
  showStatus(document.getElementById("status"), `${chosen.length} file(s) chosen`);
  document.getElementById("status").hidden = false;
}

async function classify() {
  const status = document.getElementById("status");
  const form = new FormData();
  for (const file of chosen) form.append("files", file, file.name);
  showStatus(status, `classifying ${chosen.length} file(s) …`);
  document.getElementById("predict").disabled = true;
  const rejected = document.getElementById("rejected");
  rejected.replaceChildren();
  try {
    last = await api("/v1/predict?images=true&mask=false&top_k=3", { method: "POST", body: form });
    document.getElementById("cards").replaceChildren(...last.wafers.map(card));
    for (const r of last.rejected) {
      rejected.append(el("li", { class: "fail" }, `${r.file}${r.row ? ` row ${r.row}` : ""}${r.field ? ` (${r.field})` : ""}: ${r.reason}`));
    }
    document.getElementById("model").textContent =
      `model version ${last.model_version}` + (last.shadow_version ? `, challenger ${last.shadow_version} in shadow` : "");
    document.getElementById("downloads").hidden = false;
    showStatus(status, `${last.wafers.length} wafer(s) classified, ${last.rejected.length} rejected`, "ok");
    similarWafers(form);
  } catch (err) {
    const body = err.body && err.body.detail;
    for (const r of (body && body.rejected) || []) {
      rejected.append(el("li", { class: "fail" }, `${r.file}: ${r.reason}`));
    }
    showStatus(status, `not classified: ${err.message}`, "error");
  } finally {
    document.getElementById("predict").disabled = chosen.length === 0;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  navBar("predict");
  const drop = document.getElementById("drop");
  drop.addEventListener("dragover", (e) => {
    e.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    choose(e.dataTransfer.files);
  });
  document.getElementById("files").addEventListener("change", (e) => choose(e.target.files));
  document.getElementById("predict").addEventListener("click", classify);
  document.getElementById("download-csv").addEventListener("click", () => download("predictions.csv", last.csv, "text/csv"));
  document.getElementById("download-json").addEventListener("click", () => {
    const wafers = last.wafers.map(({ overlay_png, ...rest }) => rest);
    download("predictions.json", JSON.stringify({ ...last, wafers, csv: undefined }, null, 2), "application/json");
  });
});
