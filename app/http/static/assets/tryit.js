// The try-it page: sends one image to POST /predict and shows the answer. It uses only the public API
// (GET /model, POST /predict), with URLs relative to the page so it also works under a path prefix.
"use strict";

const KEY_STORAGE = "resnet50-serving.api-key"; // sessionStorage: gone when the tab closes
const TIMING_STEPS = [
  ["decode", "Decode", "reading, decoding, resizing and cropping the image"],
  ["queue", "Queue", "waiting for a batch to start"],
  ["inference", "Inference", "the batch's model time"],
  ["other", "Other", "everything else in the request: receiving the upload, answering"],
];

const $ = (id) => document.getElementById(id);
const state = { file: null, previewUrl: null, sequence: 0 };

document.addEventListener("DOMContentLoaded", () => {
  wireInputs();
  wireApiKey();
  loadModel();
});

function wireInputs() {
  $("file").addEventListener("change", (event) => {
    const [file] = event.target.files;
    if (file) choose(file);
    event.target.value = ""; // picking the same file again still fires "change"
  });
  const drop = $("drop");
  for (const name of ["dragenter", "dragover"]) {
    drop.addEventListener(name, (event) => {
      event.preventDefault();
      drop.classList.add("drop--over");
    });
  }
  for (const name of ["dragleave", "dragend", "drop"]) {
    drop.addEventListener(name, () => drop.classList.remove("drop--over"));
  }
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    const file = event.dataTransfer && event.dataTransfer.files[0];
    if (file) choose(file);
  });
  // A file dropped beside the drop zone must not make the browser navigate away to it.
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => event.preventDefault());
  document.addEventListener("paste", (event) => {
    const items = event.clipboardData ? Array.from(event.clipboardData.items) : [];
    const item = items.find((entry) => entry.kind === "file");
    if (item) choose(item.getAsFile());
  });
  $("again").addEventListener("click", () => state.file && classify());
  $("top-k").addEventListener("change", () => state.file && classify());
}

function wireApiKey() {
  const stored = sessionStorage.getItem(KEY_STORAGE);
  if (stored) {
    $("api-key").value = stored;
    $("key-row").hidden = false;
  }
  $("show-key").addEventListener("click", () => {
    $("key-row").hidden = !$("key-row").hidden;
    if (!$("key-row").hidden) $("api-key").focus();
  });
  $("key-row").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("api-key").value.trim();
    if (key) sessionStorage.setItem(KEY_STORAGE, key);
    else sessionStorage.removeItem(KEY_STORAGE);
    if (state.file) classify();
  });
}

function choose(file) {
  state.file = file;
  if (state.previewUrl) URL.revokeObjectURL(state.previewUrl);
  state.previewUrl = URL.createObjectURL(file);
  const preview = $("preview");
  preview.onerror = () => showNoPreview(file);
  preview.onload = () => {
    preview.hidden = false;
    $("no-preview").hidden = true;
  };
  preview.src = state.previewUrl;
  $("hint").hidden = true;
  $("drop").classList.add("drop--filled");
  $("again").disabled = false;
  classify();
}

function showNoPreview(file) {
  $("preview").hidden = true;
  $("no-preview-name").textContent = `${file.name || "pasted file"} (${formatBytes(file.size)})`;
  $("no-preview").hidden = false;
}

function topK() {
  const k = Number.parseInt($("top-k").value, 10);
  return Number.isFinite(k) ? k : 5;
}

async function classify() {
  const sequence = ++state.sequence; // a newer request makes the answer of an older one irrelevant
  const k = topK();
  const body = new FormData();
  body.append("file", state.file, state.file.name || "pasted-image");
  const headers = {};
  const key = sessionStorage.getItem(KEY_STORAGE);
  if (key) headers.Authorization = `Bearer ${key}`;
  showBusy();
  const started = performance.now();
  let response;
  let answer;
  try {
    response = await fetch(`predict?top_k=${encodeURIComponent(k)}`, { method: "POST", body, headers });
    answer = await readJson(response);
  } catch (error) {
    if (sequence === state.sequence) showError("Could not reach the service", String(error.message || error), "");
    return;
  }
  if (sequence !== state.sequence) return;
  const roundTrip = performance.now() - started;
  if (response.ok && answer && answer.predictions) showResult(answer, k, roundTrip, Boolean(key));
  else showApiError(response, answer);
}

async function readJson(response) {
  const type = response.headers.get("content-type") || "";
  if (!type.includes("json")) return null;
  try {
    return await response.json();
  } catch {
    return null;
  }
}

function showBusy() {
  $("placeholder").hidden = true;
  $("error").hidden = true;
  $("busy").hidden = false;
  $("result").classList.add("result--stale");
}

function showApiError(response, answer) {
  const error = answer && answer.error;
  const title = `${response.status} ${error ? error.code : response.statusText || "error"}`;
  const message = error ? error.message : "The service answered with something other than its JSON error.";
  const meta = error && error.request_id ? `request id ${error.request_id}` : "";
  showError(title, message, meta);
  if (response.status === 401) {
    $("key-row").hidden = false;
    $("key-hint").textContent = "This service needs an API key for predictions. It stays in this browser tab.";
    $("api-key").focus();
  }
}

function showError(title, message, meta) {
  $("busy").hidden = true;
  $("result").hidden = true;
  $("error-title").textContent = title;
  $("error-message").textContent = message;
  $("error-meta").textContent = meta;
  $("error").hidden = false;
}

function showResult(answer, k, roundTrip, withKey) {
  $("busy").hidden = true;
  $("error").hidden = true;
  $("result-k").textContent = String(answer.predictions.length);
  renderPredictions(answer.predictions);
  renderTimings(answer.timing_ms, roundTrip);
  const model = answer.model;
  $("result-meta").textContent =
    `${model.name} ${model.version} · batch of ${answer.batch_size} · request id ${answer.request_id}`;
  $("curl").textContent = curlCommand(k, withKey);
  $("result").classList.remove("result--stale");
  $("result").hidden = false;
}

function renderPredictions(predictions) {
  const list = $("predictions");
  const template = $("prediction-template");
  list.replaceChildren();
  for (const prediction of predictions) {
    const row = template.content.firstElementChild.cloneNode(true);
    row.querySelector(".prediction__label").textContent = prediction.label;
    row.querySelector(".prediction__score").textContent = formatScore(prediction.score);
    row.querySelector(".prediction__id").textContent = `class ${prediction.class_id}`;
    // Sized through the CSSOM: the page's CSP allows no inline style attributes.
    row.querySelector(".prediction__fill").style.width = `${Math.max(0, Math.min(1, prediction.score)) * 100}%`;
    list.append(row);
  }
}

function renderTimings(timing, roundTrip) {
  const other = Math.max(0, timing.total - timing.decode - timing.queue - timing.inference);
  const values = { ...timing, other };
  const timeline = $("timeline");
  const list = $("timings");
  timeline.replaceChildren();
  list.replaceChildren();
  for (const [name, label, meaning] of TIMING_STEPS) {
    const segment = document.createElement("span");
    segment.className = `timeline__step timeline__step--${name}`;
    segment.style.width = `${timing.total > 0 ? (100 * values[name]) / timing.total : 0}%`;
    timeline.append(segment);
    list.append(timingEntry(name, label, values[name], meaning));
  }
  list.append(timingEntry("total", "Total", timing.total, "the whole request, measured by the service"));
  list.append(timingEntry("round-trip", "Round trip", roundTrip, "measured by this page, network included"));
}

function timingEntry(name, label, ms, meaning) {
  const entry = document.createElement("div");
  entry.className = `timing timing--${name}`;
  entry.title = meaning;
  const term = document.createElement("dt");
  term.textContent = label;
  const value = document.createElement("dd");
  value.textContent = formatMs(ms);
  entry.append(term, value);
  return entry;
}

function curlCommand(k, withKey) {
  const url = new URL(`predict?top_k=${k}`, document.baseURI).href;
  const auth = withKey ? "-H \"Authorization: Bearer $SERVE_API_KEY\" " : "";
  return `curl ${auth}-F file=@image.jpg '${url}'`;
}

async function loadModel() {
  let response;
  let info;
  try {
    response = await fetch("model");
    info = await readJson(response);
  } catch {
    $("model-status").textContent = "The service cannot be reached.";
    return;
  }
  if (!response.ok || !info || !info.version) {
    const reason = info && info.error ? info.error.message : `HTTP ${response.status}`;
    const retry = Number.parseFloat(response.headers.get("retry-after")) || 5;
    $("model-status").textContent = `Not ready yet (${reason}); trying again in ${retry} s.`;
    setTimeout(loadModel, retry * 1000);
    return;
  }
  showModel(info);
}

function showModel(info) {
  const facts = [
    ["Name", info.name],
    ["Version", info.version],
    ["Classes", String(info.num_classes)],
    ["Runs on", `${info.device} · ${info.precision} · ${info.backend}`],
    ["Input", `resize ${info.preprocessing.resize_size}, crop ${info.preprocessing.crop_size}`],
    ["Source", info.source],
    ["Batching", `up to ${info.batching.max_batch_size} images, ${info.batching.max_batch_delay_ms} ms wait`],
  ];
  const list = $("model-facts");
  list.replaceChildren();
  for (const [label, value] of facts) {
    const term = document.createElement("dt");
    term.textContent = label;
    const detail = document.createElement("dd");
    detail.textContent = value;
    list.append(term, detail);
  }
  list.hidden = false;
  $("model-status").hidden = true;
  $("untrained").hidden = info.trained !== false;
}

function formatScore(score) {
  if (score >= 0.001) return `${(score * 100).toFixed(1)}%`;
  return score > 0 ? "<0.1%" : "0%";
}

function formatMs(ms) {
  return ms >= 100 ? `${Math.round(ms)} ms` : `${ms.toFixed(1)} ms`;
}

function formatBytes(bytes) {
  if (bytes >= 1048576) return `${(bytes / 1048576).toFixed(1)} MB`;
  if (bytes >= 1024) return `${Math.round(bytes / 1024)} KB`;
  return `${bytes} B`;
}
