// The page of `digitlab serve`: draw a digit (POST /v1/predict as you draw) or drop, paste or choose a photo
// (POST /v1/read?annotate=true). Plain browser APIs, nothing fetched from elsewhere: it works offline.
"use strict";
const $ = (id) => document.getElementById(id);
const pad = $("pad"), ctx = pad.getContext("2d");
let drawing = false, last = null, inked = false, pending = null, busy = false;

function headers(type) {
  const h = { "content-type": type };
  const key = $("key").value || sessionStorage.getItem("digitlab-key");
  if (key) h["x-api-key"] = key;
  return h;
}

async function call(path, blob) {
  const script = encodeURIComponent($("script").value || "");
  const r = await fetch(`${path}${path.includes("?") ? "&" : "?"}script=${script}`,
                        { method: "POST", headers: headers(blob.type || "image/png"), body: blob });
  const body = await r.json();
  if (r.status === 401) $("key-box").hidden = false;
  if (!r.ok) throw new Error(body.error || r.statusText);
  $("status").textContent = "";
  return body;
}

function clearPad() {
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, pad.width, pad.height);
  inked = false;
  $("prediction").textContent = "–";
  $("confidence").textContent = "";
  $("bars").replaceChildren();
}

function point(e) {
  const r = pad.getBoundingClientRect();
  return [(e.clientX - r.left) * pad.width / r.width, (e.clientY - r.top) * pad.height / r.height];
}

function stroke(to) {
  ctx.strokeStyle = "#000";
  ctx.lineWidth = 20;
  ctx.lineCap = ctx.lineJoin = "round";
  ctx.beginPath();
  ctx.moveTo(...(last || to));
  ctx.lineTo(...to);
  ctx.stroke();
  last = to;
  inked = true;
}

function showPrediction(p) {
  $("prediction").textContent = p.label ?? "?";
  $("confidence").textContent = `${(100 * p.confidence).toFixed(1)}%`;
  const rows = [];
  for (const [label, prob] of Object.entries(p.probabilities)) {
    const name = document.createElement("span"), bar = document.createElement("div"),
          fill = document.createElement("div"), value = document.createElement("span");
    name.textContent = label;
    bar.className = "bar";
    fill.style.width = `${(100 * prob).toFixed(1)}%`;
    bar.append(fill);
    value.textContent = `${(100 * prob).toFixed(1)}%`;
    rows.push(name, bar, value);
  }
  $("bars").replaceChildren(...rows);
}

// one request in flight at a time; the newest drawing is sent when it returns
function predictSoon() {
  if (!inked) return;
  if (busy) { pending = true; return; }
  busy = true;
  pad.toBlob(async (blob) => {
    try { showPrediction(await call("/v1/predict", blob)); }
    catch (e) { $("status").textContent = e.message; }
    busy = false;
    if (pending) { pending = false; predictSoon(); }
  }, "image/png");
}

let lastSent = 0;
pad.addEventListener("pointerdown", (e) => { drawing = true; last = null; pad.setPointerCapture(e.pointerId); stroke(point(e)); });
pad.addEventListener("pointermove", (e) => {
  if (!drawing) return;
  stroke(point(e));
  if (performance.now() - lastSent > 150) { lastSent = performance.now(); predictSoon(); }
});
for (const end of ["pointerup", "pointercancel"]) {
  pad.addEventListener(end, () => { if (drawing) { drawing = false; last = null; predictSoon(); } });
}
$("clear").addEventListener("click", clearPad);

async function readImage(file) {
  if (!file) return;
  $("strings").textContent = "reading…";
  try {
    const r = await call("/v1/read?annotate=true", file);
    const lines = r.lines.map((l) => {
      const div = document.createElement("div"), text = document.createElement("span"), conf = document.createElement("span");
      text.className = "line";
      text.textContent = l.text;
      conf.textContent = `  confidence ${(100 * l.confidence).toFixed(1)}%`;
      div.append(text, conf);
      return div;
    });
    if (!lines.length) lines.push(Object.assign(document.createElement("div"), { textContent: "no digits found" }));
    $("strings").replaceChildren(...lines);
    $("annotated").src = `data:image/png;base64,${r.annotated_png}`;
    $("annotated").hidden = false;
  } catch (e) {
    $("strings").textContent = "";
    $("status").textContent = e.message;
  }
}
$("file").addEventListener("change", (e) => readImage(e.target.files[0]));
const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); readImage(e.dataTransfer.files[0]); });
document.addEventListener("paste", (e) => {
  const item = [...e.clipboardData.items].find((i) => i.type.startsWith("image/"));
  if (item) readImage(item.getAsFile());
});
$("key").addEventListener("change", () => { sessionStorage.setItem("digitlab-key", $("key").value); loadModels(); });

async function loadModels() {
  const r = await fetch("/v1/models", { headers: headers("application/json") });
  if (r.status === 401) { $("key-box").hidden = false; $("status").textContent = "this server needs an API key"; return; }
  const { models } = await r.json();
  $("script").replaceChildren(...models.map((m) => Object.assign(document.createElement("option"), {
    value: m.script, textContent: `${m.script} (${m.dataset})` })));
  $("status").textContent = "";
}
$("script").addEventListener("change", () => { predictSoon(); });
clearPad();
loadModels();
