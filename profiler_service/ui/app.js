// The overview page: polls the JSON API (the same one every client uses); no framework, no build step.
"use strict";

const $ = (sel) => document.querySelector(sel);
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const when = (t) => (t ? new Date(t).toLocaleString() : "–");
const short = (id) => (id ? id.slice(0, 8) : "–");
let selectedTable = null;
let shownEtag = null;

async function getJSON(path) {
  const r = await fetch(path, { cache: "no-store" });
  if (!r.ok) throw new Error(`${path}: ${r.status} ${await r.text()}`);
  return r.json();
}

function rows(tbody, html) {
  $(tbody).innerHTML = html.length ? html.join("") : '<tr><td colspan="9" class="muted">none yet</td></tr>';
}

function calibrationText(c) {
  if (!c) return '<span class="muted">none</span>';
  const loo = c.loo_rmspe != null ? `, LOO RMSPE ${(100 * c.loo_rmspe).toFixed(1)}%` : "";
  const model = c.model ? `${c.model}, ` : "";  // the fitted form, where the calibration names it
  return `v${c.version}: ${model}${c.n_networks} networks, scale ${Number(c.scale).toFixed(3)}${loo}`;
}

async function refreshDevices() {
  const devices = await getJSON("/v1/devices");
  rows("#devices tbody", devices.map((d) => `<tr><td>${esc(d.name)}</td><td>${esc(d.fingerprint.cpu_model)}</td>
    <td>${esc(d.fingerprint.cores)}</td><td>${esc(d.fingerprint.os)}</td><td>${esc(d.fingerprint.governor)}</td>
    <td>${d.tables}</td><td>${d.entries}</td><td>${when(d.updated_at)}</td></tr>`));
}

async function refreshTables() {
  const tables = await getJSON("/v1/tables");
  tables.sort((a, b) => String(b.updated_at).localeCompare(String(a.updated_at)));
  rows("#tables tbody", tables.map((t) => `<tr data-id="${esc(t.id)}" class="${t.id === selectedTable ? "selected" : ""}">
    <td><code>${esc(t.id)}</code></td><td>${esc(t.device)}</td><td>${esc(t.backend)}</td><td>${esc(t.dtype)}</td>
    <td>${t.threads}</td><td>${t.batch}</td><td class="entries">${t.entries}</td><td>${when(t.updated_at)}</td>
    <td>${calibrationText(t.calibration)}</td></tr>`));
  const sel = $("#hm-table");
  const keep = sel.value;
  sel.innerHTML = tables.map((t) => `<option value="${esc(t.id)}">${short(t.id)} · ${esc(t.device)} · ${esc(t.backend)} ${esc(t.dtype)}` +
    ` · ${t.entries} entries</option>`).join("");
  sel.value = selectedTable || keep || (tables.find((t) => t.entries > 0) || tables[0] || {}).id || "";
  return tables;
}

async function refreshJobs() {
  const jobs = await getJSON("/v1/jobs?limit=20");
  rows("#jobs tbody", jobs.map((j) => {
    const pct = j.total ? Math.round((100 * j.done) / j.total) : 0;
    return `<tr id="job-${esc(j.id)}"><td><code>${short(j.id)}</code></td><td>${esc(j.kind)}</td>
      <td class="status-${esc(j.status)}">${esc(j.status)}</td>
      <td><span class="bar"><span style="width:${pct}%"></span></span>
        <span class="progress">${j.done}/${j.total} (${pct}%)</span></td>
      <td><code>${short(j.table_id)}</code></td><td>${when(j.created_at)}</td>
      <td class="error">${esc(j.error)}</td></tr>`;
  }));
  return jobs;
}

// light yellow (fast) -> dark red (slow), on a log scale so small ops stay distinguishable
function colour(ms, lo, hi) {
  const t = hi > lo ? (Math.log(ms) - Math.log(lo)) / (Math.log(hi) - Math.log(lo)) : 0.5;
  const light = 92 - 55 * t;
  return `hsl(${50 - 50 * t}, 90%, ${light}%); color: ${light < 55 ? "#fff" : "#222"}`;
}

async function showHeatmap(ev) {
  if (ev) ev.preventDefault();
  const id = $("#hm-table").value;
  if (!id) return;
  selectedTable = id;
  const q = new URLSearchParams();
  for (const [name, el] of [["space", "#hm-space"], ["resolution", "#hm-resolution"], ["width_mult", "#hm-width"],
    ["num_classes", "#hm-classes"]]) if ($(el).value) q.set(name, $(el).value);
  try {
    const h = await getJSON(`/v1/tables/${encodeURIComponent(id)}/heatmap?${q}`);
    $("#hm-space").value = h.space;
    $("#hm-resolution").placeholder = `auto (${h.resolution})`;
    $("#hm-classes").placeholder = `auto (${h.num_classes})`;
    const values = h.layers.flatMap((l) => l.ms).filter((v) => v != null && v > 0);
    const lo = Math.min(...values), hi = Math.max(...values);
    $("#hm-caption").textContent = `table ${id} as ${h.space} @ ${h.resolution}px, width ${h.width_mult}, ` +
      `${h.num_classes} classes: median latency (ms) per searchable layer and candidate op; ` +
      `${h.needed - h.missing.length}/${h.needed} ops of the space profiled` +
      (h.resolutions.length ? `; resolutions in this table: ${h.resolutions.join(", ")}` : "");
    const head = `<tr><th>layer</th>${h.ops.map((o) => `<th>${esc(o)}</th>`).join("")}</tr>`;
    const body = h.layers.map((l) => `<tr><th>${esc(l.label)}</th>${l.ms.map((v, j) => {
      if (v == null) {
        return l.keys[j] ? `<td class="missing" title="not in the table: ${esc(l.keys[j])}">missing</td>`
          : '<td class="na">–</td>';
      }
      if (v === 0) return '<td class="na">0</td>';
      return `<td style="background:${colour(v, lo, hi)}" title="${esc(l.keys[j])}: ${v} ms">${v.toFixed(3)}</td>`;
    }).join("")}</tr>`).join("");
    $("#heatmap").innerHTML = `<table class="heatmap" data-space="${esc(h.space)}">${head}${body}</table>`;
    $("#hm-fixed").innerHTML = "<p>fixed ops: " + Object.entries(h.fixed).map(([k, v]) =>
      `<code>${esc(k)}</code> ${v == null ? '<span class="error">missing</span>' : v.toFixed(3) + " ms"}`).join("; ") + "</p>";
    history.replaceState(null, "", `/?table=${encodeURIComponent(id)}&space=${encodeURIComponent(h.space)}` +
      `&resolution=${h.resolution}`);
    document.querySelectorAll("#tables tbody tr").forEach((tr) => tr.classList.toggle("selected", tr.dataset.id === id));
  } catch (e) {
    $("#heatmap").innerHTML = `<p class="error">${esc(e.message)}</p>`;
  }
}

async function refresh() {
  try {
    const [, tables] = await Promise.all([refreshDevices(), refreshTables(), refreshJobs()]);
    const shown = tables.find((t) => t.id === selectedTable);
    // the table view follows its table: a job filling it in shows up cell by cell
    if ((!selectedTable && tables.some((t) => t.entries > 0)) || (shown && shown.etag !== shownEtag)) {
      shownEtag = shown ? shown.etag : null;
      await showHeatmap();
    }
    $("#updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (e) {
    $("#updated").innerHTML = `<span class="error">${esc(e.message)}</span>`;
  }
}

async function init() {
  const [device, spaces] = await Promise.all([getJSON("/v1/device"), getJSON("/v1/spaces")]);
  $("#this-device").textContent = `· this worker: ${device.name} (${device.backends.join(", ")})`;
  $("#hm-space").innerHTML += spaces.map((s) => `<option value="${esc(s.name)}">${esc(s.name)}</option>`).join("");
  $("#heatmap-form").addEventListener("submit", showHeatmap);
  $("#hm-table").addEventListener("change", () => { $("#hm-space").value = ""; showHeatmap(); });
  $("#tables tbody").addEventListener("click", (ev) => {
    const tr = ev.target.closest("tr[data-id]");
    if (tr) { $("#hm-table").value = tr.dataset.id; $("#hm-space").value = ""; showHeatmap(); }
  });
  // a table view is linkable: /?table=ID&space=NAME&resolution=R
  const params = new URLSearchParams(location.search);
  if (params.get("table")) {
    selectedTable = params.get("table");
    if (params.get("space")) $("#hm-space").value = params.get("space");
    if (params.get("resolution")) $("#hm-resolution").value = params.get("resolution");
    await refreshTables();
    await showHeatmap();
  }
  await refresh();
  setInterval(refresh, 1500);
}

init();
