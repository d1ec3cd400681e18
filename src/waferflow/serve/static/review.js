// Review page: the active-learning queue, one wafer at a time, one key per class.
"use strict";

const ANNOTATOR_STORE = "waferflow-annotator";
let queue = null;
let at = 0;

function nextUnlabeled(from) {
  for (let i = 0; i < queue.wafers.length; i++) {
    const j = (from + i) % queue.wafers.length;
    if (!queue.wafers[j].stored) return j;
  }
  return from;
}

function render() {
  const wafer = queue.wafers[at];
  document.getElementById("progress").textContent = `${queue.labeled}/${queue.total} labeled`;
  document.getElementById("position").textContent = `#${wafer.rank} of ${queue.total}`;
  document.getElementById("wafer-id").textContent = wafer.wafer_id;
  showImage(wafer);
  document.getElementById("guess").textContent = `${wafer.predicted} ${(100 * wafer.confidence).toFixed(1)} %`;
  document.getElementById("top3").textContent = `top 3: ${wafer.top3}`;
  document.getElementById("stored").textContent = wafer.stored
    ? `${wafer.stored.label} (by ${wafer.stored.annotator}, round ${wafer.stored.round})`
    : "none yet";
}

// The image comes through the API (with the key), so it is fetched, not linked.
async function showImage(wafer) {
  const img = document.getElementById("wafer-image");
  if (!wafer.blob) {
    try {
      wafer.blob = URL.createObjectURL(await apiBlob(wafer.image));
    } catch (err) {
      img.removeAttribute("src");
      img.alt = `no image: ${err.message}`;
      return;
    }
  }
  if (queue.wafers[at] === wafer) img.src = wafer.blob;
}

async function answer(label) {
  const status = document.getElementById("status");
  const annotator = document.getElementById("annotator").value.trim();
  if (!annotator) {
    showStatus(status, "give your name as annotator first: every stored label says who gave it", "error");
    document.getElementById("annotator").focus();
    return;
  }
  const wafer = queue.wafers[at];
  try {
    const result = await postJson("/v1/review/labels", { wafer_id: wafer.wafer_id, label, annotator });
    if (result.stored) {
      wafer.stored = { label, annotator, round: queue.round };
      queue.labeled += 1;
      showStatus(status, `${wafer.wafer_id}: ${label} stored`, "ok");
      at = nextUnlabeled(at);
    } else {
      showStatus(status, `${wafer.wafer_id}: already ${label}, nothing changed`, "info");
    }
  } catch (err) {
    showStatus(status, `${wafer.wafer_id}: refused: ${err.message}`, "error");
  }
  render();
}

async function load() {
  const status = document.getElementById("status");
  try {
    queue = await api("/v1/review/queue");
  } catch (err) {
    showStatus(status, `no queue: ${err.message}`, "error");
    return;
  }
  if (!queue.total) {
    showStatus(status, "the queue is empty", "info");
    return;
  }
  document.getElementById("round").textContent = `(round ${queue.round}, ${queue.strategy})`;
  document.getElementById("keys").replaceChildren(
    ...queue.classes.map((name, i) =>
      el("button", { "data-class": name, onclick: () => answer(name) }, el("kbd", {}, i + 1), name)
    )
  );
  at = nextUnlabeled(0);
  document.getElementById("review").hidden = false;
  showStatus(status, "answer with keys 1–9", "info");
  render();
}

document.addEventListener("DOMContentLoaded", () => {
  navBar("review");
  const who = document.getElementById("annotator");
  who.value = localStorage.getItem(ANNOTATOR_STORE) || "";
  who.addEventListener("change", () => localStorage.setItem(ANNOTATOR_STORE, who.value.trim()));
  document.getElementById("prev").addEventListener("click", () => {
    at = (at - 1 + queue.total) % queue.total;
    render();
  });
  document.getElementById("next").addEventListener("click", () => {
    at = (at + 1) % queue.total;
    render();
  });
  document.addEventListener("keydown", (e) => {
    if (!queue || e.target.tagName === "INPUT") return;
    if (e.key >= "1" && e.key <= "9") answer(queue.classes[Number(e.key) - 1]);
    else if (e.key === "ArrowRight") document.getElementById("next").click();
    else if (e.key === "ArrowLeft") document.getElementById("prev").click();
  });
  document.addEventListener("api-key-changed", load);
  load();
});
