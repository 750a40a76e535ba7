// The mesh's status, live: four pages over the admin API — /v1/mesh (read again on every
// change /v1/mesh/events announces, and every few seconds for the counters), /v1/alerts,
// /v1/mesh/decisions and /v1/policies. Data goes into the page as text only (no HTML
// from the API), so nothing a cluster reports can run here. The pages only read: the
// session cookie is accepted for GET alone.
"use strict";

const SECURITY = { mutual_tls: "mTLS", partial: "partial", failing: "FAILING", unknown: "none yet" };
const LOCK = { mutual_tls: "closed", partial: "half", failing: "broken", unknown: "none" };
// Problems first when sorting edges.
const RANK = { failing: 0, partial: 1, unknown: 2, mutual_tls: 3 };
// An edge whose newest report is older than this is shown as stale (a gateway misses
// three 2 s reports before the federation calls it stale).
const STALE_SECONDS = 6;
// Beyond this many clusters the boxes fold to a summary unless they hold a problem or
// match the filter; beyond this many rows the edge table asks for a filter.
const OPEN_CLUSTERS = 12;
const MAX_ROWS = 200;

const state = { picture: null, alerts: null, decisions: null, policies: null, selected: "" };

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== undefined && v !== null) node.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c !== undefined && c !== null) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

// A lock drawn in SVG (no emoji: a browser without an emoji font draws empty boxes).
function lock(security) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  const kind = LOCK[security] || "none";
  svg.setAttribute("viewBox", "0 0 16 16");
  svg.setAttribute("class", `lock lock-${kind}`);
  svg.setAttribute("data-lock", kind);
  svg.setAttribute("aria-hidden", "true");
  const shackle = document.createElementNS(ns, "path");
  shackle.setAttribute("d", {
    closed: "M4.5 7V5a3.5 3.5 0 0 1 7 0v2",
    half: "M4.5 7V5a3.5 3.5 0 0 1 7 0v0.5",
    broken: "M4.5 7V5a3.5 3.5 0 0 1 6.6-1.6",
    none: "M4.5 7V5a3.5 3.5 0 0 1 7 0v2",
  }[kind]);
  shackle.setAttribute("fill", "none");
  const body = document.createElementNS(ns, "rect");
  for (const [k, v] of Object.entries({ x: 3, y: 7, width: 10, height: 8, rx: 1.5 })) body.setAttribute(k, v);
  svg.append(shackle, body);
  return el("span", { class: "security", "data-security": security, title: security },
    svg, " ", SECURITY[security] || "none yet");
}

function edgeKey(e) {
  return e.service ? `${e.source_cluster}→${e.destination_cluster}/${e.service}` : `${e.source_cluster}→${e.destination_cluster}`;
}

function seconds(s) {
  const n = Math.round(Math.abs(s));
  if (n < 120) return `${n} s`;
  if (n < 7200) return `${Math.round(n / 60)} min`;
  if (n < 172800) return `${Math.round(n / 3600)} h`;
  return `${Math.round(n / 86400)} days`;
}

function when(unix) {
  return new Date(unix * 1000).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}

function ago(unix) {
  return `${seconds(Date.now() / 1000 - unix)} ago`;
}

function edgeLink(key) {
  return el("a", { href: `#topology?edge=${encodeURIComponent(key)}`, "data-edge-link": key }, key);
}

// The page shown, from the address: `#alerts`, `#topology?edge=…`.
function route() {
  const [page, query] = (location.hash.slice(1) || "overview").split("?");
  const known = ["overview", "topology", "policy", "alerts"].includes(page) ? page : "overview";
  const edge = new URLSearchParams(query || "").get("edge");
  if (edge !== null) state.selected = edge;
  for (const section of document.querySelectorAll("[data-page]")) section.hidden = section.dataset.page !== known;
  for (const link of document.querySelectorAll("[data-page-link]")) {
    link.toggleAttribute("aria-current", link.dataset.pageLink === known);
  }
  document.body.dataset.showing = known;
  if (known === "policy") loadPolicy();
  render();
}

function staleClusters(picture) {
  const byCluster = new Map();
  for (const g of picture.gateways) {
    if (!byCluster.has(g.cluster)) byCluster.set(g.cluster, []);
    byCluster.get(g.cluster).push(g);
  }
  return [...byCluster.entries()]
    .filter(([, gws]) => gws.every((g) => g.state !== "up"))
    .map(([name, gws]) => ({ name, age: Math.min(...gws.map((g) => g.age_seconds)), state: gws.some((g) => g.state === "stale") ? "stale" : "lost" }))
    .sort((a, b) => a.name.localeCompare(b.name));
}

function renderHeader() {
  const { picture, alerts } = state;
  const fresh = document.getElementById("freshness");
  fresh.textContent = `node ${picture.node}, revision ${picture.revision}`;
  fresh.dataset.freshness = "live";
  const stale = staleClusters(picture);
  const banner = document.getElementById("stale-banner");
  banner.hidden = stale.length === 0;
  banner.dataset.staleClusters = stale.map((c) => c.name).join(" ");
  banner.replaceChildren(...stale.map((c) =>
    el("span", { "data-stale-cluster": c.name },
      `${c.name}: ${c.state}, no report for ${seconds(c.age)} — its last data is shown, greyed. `)));
  const open = alerts ? alerts.firing.length : 0;
  const badge = document.getElementById("alert-badge");
  badge.dataset.openAlerts = String(open);
  badge.textContent = open ? String(open) : "";
}

function expiry(g, kind) {
  const c = g.certificates.find((x) => x.kind === kind);
  if (!c) return el("td", {}, "—");
  const left = c.not_after - state.picture.generated_at;
  // Leaves live hours and renew at half their life; the CA's certificates live weeks.
  const [warn, crit] = kind === "leaf" ? [900, 300] : [7 * 86400, 86400];
  const level = left < crit ? "critical" : left < warn ? "warning" : "ok";
  return el("td", { "data-expiry": kind, "data-level": level, title: when(c.not_after) },
    left < 0 ? `expired ${seconds(left)} ago` : `in ${seconds(left)}`);
}

function renderOverview() {
  const { picture, alerts } = state;
  const count = (list, f) => list.filter(f).length;
  const services = picture.edges.filter((e) => e.service);
  const clusters = new Set(picture.gateways.map((g) => g.cluster));
  const fact = (name, value, one, many) => el("div", { class: "fact", [`data-${name}`]: String(value) },
    el("strong", {}, String(value)), " ", value === 1 ? one : many);
  document.getElementById("summary").replaceChildren(
    fact("clusters", clusters.size, "cluster", "clusters"),
    fact("gateways-up", count(picture.gateways, (g) => g.state === "up"), "gateway up", "gateways up"),
    fact("gateways-stale", count(picture.gateways, (g) => g.state === "stale"), "stale", "stale"),
    fact("gateways-lost", count(picture.gateways, (g) => g.state === "lost"), "lost", "lost"),
    fact("edges-mutual-tls", count(services, (e) => e.security === "mutual_tls"), "edge all mutual TLS", "edges all mutual TLS"),
    fact("edges-not-mutual-tls", count(services, (e) => e.security === "partial" || e.security === "failing"), "edge not", "edges not"),
    fact("open-alerts", alerts ? alerts.firing.length : 0, "alert firing", "alerts firing"));
  const rows = [...picture.gateways]
    .sort((a, b) => `${a.cluster}/${a.gateway}`.localeCompare(`${b.cluster}/${b.gateway}`))
    .map((g) => el("tr", { "data-gateway": `${g.cluster}/${g.gateway}`, "data-state": g.state, class: g.state === "up" ? "" : "old" },
      el("td", {}, g.cluster),
      el("td", {}, g.gateway),
      el("td", { class: `state-${g.state}` }, g.state, g.state === "up" ? "" : ` (no report for ${seconds(g.age_seconds)})`),
      expiry(g, "leaf"), expiry(g, "intermediate"), expiry(g, "root"),
      el("td", { "data-catalog-age": String(Math.round(g.catalog_age_seconds)) },
        `revision ${g.catalog_revision}, confirmed ${seconds(g.catalog_age_seconds)} ago`),
      el("td", { "data-roots": g.active_roots.length > 1 ? "rotating" : "steady", title: g.active_roots.join("\n") },
        g.active_roots.length > 1 ? `rotation in progress: ${g.active_roots.length} roots in force` : `${g.active_roots.length} root`,
        g.retired_roots.length ? `, ${g.retired_roots.length} retired` : ""),
      el("td", {}, `${g.peers.filter((p) => p.connected).length} of ${g.peers.length}`)));
  document.querySelector("#gateways tbody").replaceChildren(...rows);
  document.getElementById("overview-alerts").replaceChildren(
    ...(alerts && alerts.firing.length ? alerts.firing.slice(0, 10).map((a) => alertItem(a, "firing")) : [el("li", { class: "hint" }, "No alert firing.")]));
}

function matches(e, filter) {
  return !filter || edgeKey(e).toLowerCase().includes(filter);
}

function renderTopology() {
  const { picture } = state;
  const filter = document.getElementById("filter").value.trim().toLowerCase();
  const problemsOnly = document.getElementById("problems").checked;
  const problem = (e) => e.security === "failing" || e.security === "partial";
  const clusters = new Map();
  const box = (name) => {
    if (!clusters.has(name)) clusters.set(name, { gateways: [], services: new Map() });
    return clusters.get(name);
  };
  for (const g of picture.gateways) box(g.cluster).gateways.push(g);
  for (const e of picture.edges) {
    if (!e.service) continue;
    const services = box(e.destination_cluster).services;
    if (!services.has(e.service)) services.set(e.service, []);
    services.get(e.service).push(e);
  }
  const worst = (edges) => edges.reduce((w, e) => (RANK[e.security] < RANK[w] ? e.security : w), "mutual_tls");
  const names = [...clusters.keys()].sort();
  const boxes = names.map((name) => {
    const c = clusters.get(name);
    const services = [...c.services.entries()].sort(([a], [b]) => a.localeCompare(b))
      .filter(([, edges]) => (!problemsOnly || edges.some(problem)) && (!filter || name.includes(filter) || edges.some((e) => matches(e, filter))));
    const troubled = [...c.services.values()].some((edges) => edges.some(problem)) || c.gateways.some((g) => g.state !== "up");
    if ((problemsOnly && !troubled) || (filter && !name.includes(filter) && services.length === 0)) return null;
    const down = c.gateways.every((g) => g.state !== "up");
    const details = el("details", { class: `cluster${down ? " old" : ""}`, "data-cluster": name },
      el("summary", {}, el("strong", {}, name),
        ` — ${c.services.size} ${c.services.size === 1 ? "service" : "services"}`, troubled ? ", needs a look" : ""),
      ...c.gateways.map((g) => el("div", { "data-gateway-box": `${g.cluster}/${g.gateway}`, "data-state": g.state },
        `gateway ${g.gateway}: ${g.state}` + (g.state === "up" ? "" : ` (${seconds(g.age_seconds)} since its last report)`))),
      ...services.map(([service, edges]) => el("div", { class: "service", "data-service": `${name}/${service}` },
        lock(worst(edges)), ` ${service} ← `,
        ...edges.map((e, i) => [i ? ", " : "", el("a", { href: `#topology?edge=${encodeURIComponent(edgeKey(e))}`, "data-edge-link": edgeKey(e) }, e.source_cluster)]))));
    details.open = names.length <= OPEN_CLUSTERS || troubled || Boolean(filter);
    return details;
  }).filter(Boolean);
  document.getElementById("clusters").replaceChildren(...boxes);

  const edges = picture.edges
    .filter((e) => matches(e, filter) && (!problemsOnly || problem(e)))
    .sort((a, b) => RANK[a.security] - RANK[b.security] || edgeKey(a).localeCompare(edgeKey(b)));
  const shown = edges.slice(0, MAX_ROWS);
  const rows = shown.map((e) => {
    const key = edgeKey(e);
    const row = el("tr", { "data-edge": key, "data-security": e.security,
                           "data-fresh": e.age_seconds > STALE_SECONDS ? "stale" : "live",
                           class: `${e.age_seconds > STALE_SECONDS ? "old" : ""}${key === state.selected ? " selected" : ""}`, tabindex: "0" },
      el("td", {}, lock(e.security), e.age_seconds > STALE_SECONDS ? ` (as of ${seconds(e.age_seconds)} ago)` : ""),
      el("td", {}, e.source_cluster),
      el("td", {}, e.destination_cluster),
      el("td", {}, e.service || "(cluster hop)"),
      el("td", {}, `${e.connections} (${e.active} open)`),
      el("td", {}, e.handshake_failures.reduce((n, f) => n + f.count, 0) || ""));
    const select = () => { location.hash = `#topology?edge=${encodeURIComponent(key)}`; };
    row.addEventListener("click", select);
    row.addEventListener("keydown", (ev) => { if (ev.key === "Enter") select(); });
    return row;
  });
  document.querySelector("#edges tbody").replaceChildren(...rows);
  const hidden = edges.length - shown.length;
  const more = document.getElementById("hidden-edges");
  more.dataset.hiddenEdges = String(hidden);
  more.textContent = hidden > 0 ? `${hidden} more edges: filter by cluster or service to see them.` : "";
  renderDetail();
}

function renderDetail() {
  const aside = document.getElementById("edge-detail");
  const e = state.picture.edges.find((x) => edgeKey(x) === state.selected);
  aside.dataset.selected = e ? state.selected : "";
  if (!e) {
    aside.replaceChildren(el("p", { class: "hint" }, state.selected ? `${state.selected}: not in this node's picture.` : "No edge selected."));
    return;
  }
  // Handshake failures belong to the cluster hop: a service edge shows its hop's.
  const hop = e.service ? state.picture.edges.find((x) => !x.service && x.source_cluster === e.source_cluster && x.destination_cluster === e.destination_cluster) : e;
  const failures = hop ? hop.handshake_failures : [];
  const line = (name, value) => el("tr", {}, el("th", {}, name), el("td", {}, value));
  aside.replaceChildren(
    el("h3", {}, edgeKey(e)),
    lock(e.security),
    el("table", {},
      line("connections", `${e.connections} carried, ${e.mutual_tls} on a mutual-TLS hop, ${e.active} open`),
      line("streams decided", e.streams),
      line("bytes", `${e.bytes_received} from callers, ${e.bytes_sent} to them`),
      line("app legs", `TLS end to end ${e.app_tls.passthrough}, terminated ${e.app_tls.terminated}, plain ${e.app_tls.none}`
        + (e.plaintext_on_tls ? `; ${e.plaintext_on_tls} plain to a port declared TLS` : "")),
      line("identities", e.peer_identities.join(", ") || "none yet"),
      line("last connection", e.last_connection_at ? ago(e.last_connection_at) : "never"),
      line("reported by", `${e.reported_by.join(", ")}, ${seconds(e.age_seconds)} ago`)),
    el("h4", {}, "Handshake failures"),
    failures.length
      ? el("ul", {}, ...failures.map((f) => el("li", { "data-failure": f.reason, "data-side": f.side },
          `${f.reason}: ${f.count} (${f.side} side), last ${ago(f.last_at)}`)))
      : el("p", { class: "hint" }, "None."),
    el("h4", {}, "Policy decisions"),
    e.decisions.length
      ? el("ul", {}, ...e.decisions.map((d) => el("li", { "data-decision": d.rule, "data-decision-kind": d.decision },
          `${d.decision} by ${d.rule}: ${d.count}`)))
      : el("p", { class: "hint" }, e.service ? "None yet." : "Decisions are per service."));
}

// Every rule of the policies in force, with its mode (shadow or enforced).
function policyRules() {
  const rules = new Map();
  for (const p of (state.policies && state.policies.items) || []) {
    let doc;
    try { doc = JSON.parse(p.body); } catch { continue; }
    for (const r of doc.rules || []) rules.set(`${p.name}/${r.name}`, `${r.mode || "enforce"} ${r.action}`);
    for (const l of doc.rate_limits || []) rules.set(`${p.name}/${l.name}`, "rate limit");
  }
  return rules;
}

function renderPolicy() {
  const { decisions } = state;
  const rules = policyRules();
  const counts = new Map();
  for (const d of (decisions && decisions.decisions) || []) {
    if (!counts.has(d.rule)) counts.set(d.rule, { total: {}, edges: new Map() });
    const c = counts.get(d.rule);
    c.total[d.decision] = (c.total[d.decision] || 0) + d.count;
    const key = `${d.source_cluster}→${d.destination_cluster}/${d.service}`;
    c.edges.set(key, (c.edges.get(key) || 0) + d.count);
  }
  const names = [...new Set([...rules.keys(), ...counts.keys()])].sort();
  const cell = (c, kind) => el("td", { "data-count": kind }, String((c && c.total[kind]) || 0));
  document.querySelector("#rules tbody").replaceChildren(...names.map((rule) => {
    const c = counts.get(rule);
    return el("tr", { "data-rule": rule },
      el("td", {}, rule),
      el("td", {}, rules.get(rule) || "built in"),
      cell(c, "allow"), cell(c, "deny"), cell(c, "shadow_deny"), cell(c, "shadow_allow"), cell(c, "rate_limited"),
      el("td", {}, ...(c ? [...c.edges.entries()].map(([key, n], i) => [i ? ", " : "", edgeLink(key), ` ×${n}`]) : [])));
  }));
  const span = document.getElementById("window-span");
  if (decisions) {
    const short = decisions.to - decisions.from < decisions.window_seconds;
    span.textContent = `${when(decisions.from)} to ${when(decisions.to)}` + (short ? " (this node has counted only since then)" : "");
  }
  document.getElementById("policies").replaceChildren(...((state.policies && state.policies.items) || []).map((p) =>
    el("details", { "data-policy": p.name }, el("summary", {}, `${p.name} (revision ${p.revision})`), el("pre", {}, p.body))));
}

function alertItem(a, status) {
  const labels = Object.entries(a.labels).map(([k, v]) => `${k}=${v}`).join(", ");
  return el("li", { "data-alert": a.alertname, "data-alert-state": status, "data-severity": a.severity, "data-alert-labels": labels, class: `severity-${a.severity}` },
    el("strong", {}, a.alertname), ` (${a.severity}) `, a.summary,
    el("div", { class: "when" },
      status === "firing" ? `firing since ${when(a.starts_at)} (${ago(a.starts_at)})` : `fired ${when(a.starts_at)}, resolved ${when(a.ends_at)} after ${seconds(a.ends_at - a.starts_at)}`,
      " · ", labels, a.edge ? [" · ", edgeLink(a.edge)] : []));
}

function renderAlerts() {
  const { alerts } = state;
  if (!alerts) return;
  document.getElementById("alert-source").textContent =
    (alerts.delivering ? `Evaluated and delivered by ${alerts.node} (the leader)` : `Evaluated by ${alerts.node}; the leader delivers them`) +
    (alerts.evaluated_at ? `, last evaluated ${ago(alerts.evaluated_at)}.` : ", not yet evaluated.");
  const list = (items, status) => items.length ? items.map((a) => alertItem(a, status)) : [el("li", { class: "hint" }, status === "firing" ? "Nothing firing." : "Nothing resolved yet.")];
  document.getElementById("firing").replaceChildren(...list(alerts.firing, "firing"));
  document.getElementById("resolved").replaceChildren(...list(alerts.resolved, "resolved"));
}

function render() {
  if (!state.picture) return;
  renderHeader();
  const page = document.body.dataset.showing;
  if (page === "overview") renderOverview();
  if (page === "topology") renderTopology();
  if (page === "policy") renderPolicy();
  if (page === "alerts") renderAlerts();
}

async function read(path) {
  const answer = await fetch(path, { credentials: "same-origin" });
  if (answer.status === 401 || answer.status === 403) {
    location.href = "/ui/signin";
    throw new Error("signed out");
  }
  if (!answer.ok) throw new Error(`${path}: ${answer.status}`);
  return answer.json();
}

async function load() {
  try {
    const [picture, alerts] = await Promise.all([read("/v1/mesh"), read("/v1/alerts")]);
    state.picture = picture;
    state.alerts = alerts;
    if (document.body.dataset.showing === "policy") await loadPolicy(false);
    render();
  } catch (e) {
    document.getElementById("freshness").dataset.freshness = "stale";
  }
}

async function loadPolicy(draw = true) {
  const chosen = document.getElementById("window").value;
  try {
    const [decisions, policies] = await Promise.all([
      read(`/v1/mesh/decisions?window_seconds=${encodeURIComponent(chosen)}`),
      read("/v1/policies?consistency=stale"),
    ]);
    state.decisions = decisions;
    state.policies = policies;
    if (draw) render();
  } catch (e) {
    document.getElementById("window-span").textContent = `not read: ${e.message}`;
  }
}

function watch() {
  const events = new EventSource("/v1/mesh/events");
  for (const kind of ["gateway", "edge", "resync"]) events.addEventListener(kind, load);
  events.onerror = () => { document.getElementById("freshness").dataset.freshness = "stale"; };
  events.onopen = load;
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("filter").addEventListener("input", render);
  document.getElementById("problems").addEventListener("change", render);
  document.getElementById("window").addEventListener("change", () => loadPolicy());
  window.addEventListener("hashchange", route);
  route();
  watch();
  // Counters and alerts change without a change of status: read them again now and then.
  setInterval(load, 3000);
});
