// The mesh's status, live: the picture from /v1/mesh, read again on every change
// /v1/mesh/events announces. Data goes into the page as text only (no HTML from the
// API), so nothing a cluster reports can run here.
"use strict";

// Words, not emoji: a browser without an emoji font draws those as empty boxes.
const SECURITY = { mutual_tls: "mTLS", partial: "partial", failing: "FAILING", unknown: "none yet" };
// An edge whose newest report is older than this is shown as stale (a gateway misses
// three 2 s reports before the federation calls it stale).
const STALE_SECONDS = 6;
let picture = null;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

function edgeKey(e) {
  return e.service ? `${e.source_cluster}→${e.destination_cluster}/${e.service}` : `${e.source_cluster}→${e.destination_cluster}`;
}

function render() {
  if (!picture) return;
  const fresh = document.getElementById("freshness");
  fresh.textContent = `node ${picture.node}, revision ${picture.revision}`;
  fresh.dataset.freshness = "live";
  const clusters = new Map();
  for (const g of picture.gateways) {
    if (!clusters.has(g.cluster)) clusters.set(g.cluster, { gateways: [], services: new Set() });
    clusters.get(g.cluster).gateways.push(g);
  }
  for (const e of picture.edges) {
    if (e.service && clusters.has(e.destination_cluster)) clusters.get(e.destination_cluster).services.add(e.service);
  }
  const boxes = [...clusters.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([name, c]) =>
    el("div", { class: "cluster", "data-cluster": name },
      el("h3", {}, name),
      ...c.gateways.map((g) => el("div", { "data-gateway": `${g.cluster}/${g.gateway}`, "data-state": g.state },
        `gateway ${g.gateway}: ${g.state}` + (g.state === "up" ? "" : ` (${Math.round(g.age_seconds)} s since its last report)`))),
      ...[...c.services].sort().map((s) => el("div", { "data-service": `${name}/${s}` }, `serves ${s}`))));
  document.getElementById("gateways").replaceChildren(...boxes);
  const filter = document.getElementById("filter").value.trim().toLowerCase();
  const rows = picture.edges
    .filter((e) => !filter || edgeKey(e).toLowerCase().includes(filter))
    .sort((a, b) => edgeKey(a).localeCompare(edgeKey(b)))
    .map((e) => el("tr", { "data-edge": edgeKey(e), "data-security": e.security,
                           "data-fresh": e.age_seconds > STALE_SECONDS ? "stale" : "live" },
      el("td", { title: e.security }, SECURITY[e.security] || "none yet",
        e.age_seconds > STALE_SECONDS ? ` (as of ${Math.round(e.age_seconds)} s ago)` : ""),
      el("td", {}, e.source_cluster),
      el("td", {}, e.destination_cluster),
      el("td", {}, e.service || "(cluster hop)"),
      el("td", {}, `${e.connections} (${e.active} open)`),
      el("td", {}, `${e.bytes_received} / ${e.bytes_sent}`),
      el("td", {}, `tls ${e.app_tls.passthrough}, terminated ${e.app_tls.terminated}, plain ${e.app_tls.none}`),
      el("td", {}, e.handshake_failures.map((f) => `${f.reason} ×${f.count} (${f.side})`).join(", ") || "none"),
      el("td", {}, e.decisions.map((d) => `${d.decision} ${d.rule} ×${d.count}`).join(", ") || "none")));
  document.querySelector("#edges tbody").replaceChildren(...rows);
}

async function load() {
  const answer = await fetch("/v1/mesh", { credentials: "same-origin" });
  if (answer.status === 401 || answer.status === 403) {
    location.href = "/ui/signin";
    return;
  }
  picture = await answer.json();
  render();
}

function watch() {
  const events = new EventSource("/v1/mesh/events");
  for (const kind of ["gateway", "edge", "resync"]) events.addEventListener(kind, load);
  events.onerror = () => { document.getElementById("freshness").dataset.freshness = "stale"; };
  events.onopen = load;
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("filter").addEventListener("input", render);
  watch();
  // The counters change without a change of status: read them again now and then.
  setInterval(load, 5000);
});
