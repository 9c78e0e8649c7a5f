"use strict";
// The dashboard page: the server sends the full picture once, then deltas (see
// src/dashboard/model.rs); this script keeps them in S and redraws what changed.
// Read-only: nothing here sends anything but the one event-stream request.
(function () {
  const token = new URLSearchParams(location.search).get("token") || "";
  const WINDOW = 60000;
  const S = {
    workers: new Map(), bars: new Map(), transfers: [], graphs: new Map(),
    cluster: null, logs: [], counters: {}, now: 0, at: 0,
  };
  const $ = (id) => document.getElementById(id);

  function bytes(n) {
    const u = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : String(n)) + " " + u[i];
  }
  // Same hash as src/dashboard/report.rs: a kind has one colour everywhere.
  function colour(kind) {
    let h = 2166136261;
    for (let i = 0; i < kind.length; i++) h = Math.imul(h ^ kind.charCodeAt(i), 16777619) >>> 0;
    return "hsl(" + (h % 360) + ",65%,50%)";
  }
  function text(el, v) { if (el.textContent !== String(v)) el.textContent = v; }
  function el(tag, cls, txt) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (txt !== undefined) e.textContent = txt;
    return e;
  }

  function apply(d) {
    if (d.full) { S.workers.clear(); S.bars.clear(); S.transfers = []; S.graphs.clear(); S.logs = []; }
    S.now = d.now; S.at = performance.now();
    S.counters = d.counters;
    for (const w of d.workers) S.workers.set(w.id, w);
    for (const id of d.workers_gone) S.workers.delete(id);
    for (const b of d.bars) S.bars.set(b.id, b);
    for (const t of d.transfers) S.transfers.push(t);
    for (const g of d.graphs) S.graphs.set(g.client, g);
    if (d.cluster) S.cluster = d.cluster;
    if (d.logs.length) { S.logs.push(...d.logs); if (S.logs.length > 2000) S.logs.splice(0, S.logs.length - 2000); }
    const cut = S.now - WINDOW;
    for (const [id, b] of S.bars) if (b.end < cut) S.bars.delete(id);
    while (S.transfers.length && S.transfers[0].at < cut) S.transfers.shift();
    renderCounters(); renderWorkers(d); renderCluster(d); renderGraphs(); renderLogs(d);
  }

  function renderCounters() {
    const c = S.counters;
    text($("n-workers"), c.workers);
    text($("n-finished"), c.finished);
    text($("n-processing"), c.tasks.processing);
    text($("n-queued"), c.tasks.queued + c.tasks.waiting);
    text($("n-erred"), c.tasks.erred);
    text($("n-memory"), bytes(c.memory));
    text($("c-workers"), c.workers);
  }

  // Workers: one row each, updated in place (only the rows that changed arrive).
  const rows = new Map();
  function memBar(w) {
    const d = el("div", "mem");
    const f = w.memory_limit ? Math.min(1, w.memory / w.memory_limit) : 0;
    const u = el("div", "used" + (f >= 0.8 ? " full" : f >= 0.6 ? " hot" : ""));
    u.style.width = (f * 100).toFixed(1) + "%";
    d.appendChild(u);
    for (const [at, cls] of [[0.6, "mark"], [0.7, "mark"], [0.8, "mark pause"]]) {
      const m = el("div", cls); m.style.left = (at * 100) + "%"; m.title = (at * 100) + "%"; d.appendChild(m);
    }
    return d;
  }
  function renderWorkers(d) {
    const body = $("w-table").tBodies[0];
    for (const id of d.workers_gone) { const r = rows.get(id); if (r) { r.remove(); rows.delete(id); } }
    for (const w of d.workers) {
      let r = rows.get(w.id);
      if (!r) {
        r = el("tr"); r.className = "worker"; r.dataset.id = w.id;
        for (let i = 0; i < 12; i++) r.appendChild(el("td"));
        rows.set(w.id, r);
        // In id order.
        let next = null;
        for (const [oid, or] of rows) if (oid > w.id && (!next || oid < Number(next.dataset.id))) next = or;
        body.insertBefore(r, next);
      }
      const c = r.cells;
      text(c[0], w.name); text(c[1], w.host); text(c[2], w.job_id || "—"); text(c[3], w.state);
      text(c[4], w.nthreads); text(c[5], bytes(w.memory) + " / " + bytes(w.memory_limit));
      c[6].replaceChildren(memBar(w));
      text(c[7], w.processing); text(c[8], w.results); text(c[9], bytes(w.held_bytes));
      text(c[10], bytes(w.spilled_bytes)); text(c[11], Math.round(w.cpu * 100) + "%");
      for (const i of [4, 7, 8, 11]) c[i].className = "num";
    }
  }

  function renderCluster(d) {
    const p = d.cluster;
    if (!p) return;
    text($("title"), "rdask-jobqueue · " + p.name + (p.system ? " (" + p.system + ")" : ""));
    text($("c-target"), p.target_workers);
    text($("c-target-text"), "target: " + p.target);
    const js = $("c-jobstates");
    js.replaceChildren();
    for (const [state, n] of Object.entries(p.jobs_by_state)) {
      const tr = el("tr"); tr.appendChild(el("td", "", state)); tr.appendChild(el("td", "num", n)); js.appendChild(tr);
    }
    text($("c-paused"), p.paused ? "PAUSED: " + p.paused : "");
    text($("c-failures"), p.submit_failures);
    const jb = $("c-jobs").tBodies[0];
    jb.replaceChildren();
    for (const j of p.jobs) {
      const tr = el("tr");
      for (const v of [j.job_id || "(submitting)", j.name, j.state, j.pending_reason || "", Math.round(j.age_s) + " s", j.workers]) tr.appendChild(el("td", "", v));
      jb.appendChild(tr);
    }
    const dl = $("c-decisions");
    dl.replaceChildren();
    for (const x of p.decisions) dl.appendChild(el("li", "", x));
    const fl = $("c-failed");
    fl.replaceChildren();
    if (!p.failed.length) fl.appendChild(el("p", "hint", "none"));
    for (const j of p.failed) {
      const box = el("div", "failed-job");
      box.appendChild(el("div", "", (j.job_id || "?") + " " + j.name + ": " + j.state));
      box.appendChild(el("pre", "stderr", j.detail || "(no output)"));
      fl.appendChild(box);
    }
    const er = $("c-errors");
    er.replaceChildren();
    if (p.errors.length) { er.appendChild(el("h2", "", "Recent problems")); for (const e of p.errors) er.appendChild(el("pre", "bad", e)); }
  }

  function renderGraphs() {
    const box = $("graphs");
    box.replaceChildren();
    for (const g of S.graphs.values()) {
      if (!g.tasks) continue;
      const row = el("div", "graph");
      const track = el("span", "track"); const done = el("div", "done");
      done.style.width = Math.min(100, (g.done / g.tasks) * 100).toFixed(1) + "%";
      track.appendChild(done); row.appendChild(track);
      row.appendChild(el("span", "", "client " + g.client + ": " + g.done + " / " + g.tasks + " tasks" + (g.erred ? ", " + g.erred + " failed" : "")));
      box.appendChild(row);
    }
  }

  function renderLogs(d) {
    if (!d.logs.length) return;
    const pre = $("logs");
    const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    if (d.full) pre.textContent = "";
    pre.appendChild(document.createTextNode(d.logs.join("\n") + "\n"));
    while (pre.childNodes.length > 200) pre.removeChild(pre.firstChild);
    if (atEnd) pre.scrollTop = pre.scrollHeight;
  }

  // The task stream: drawn from S on a timer, so the window slides smoothly between deltas.
  function drawStream() {
    const cv = $("stream");
    if (!cv.offsetParent) return; // page hidden
    const lanes = [];
    const laneOf = new Map();
    for (const w of [...S.workers.values()].sort((a, b) => a.id - b.id)) {
      for (let t = 0; t < Math.max(1, w.nthreads); t++) { laneOf.set(w.id + ":" + t, lanes.length); lanes.push(w.name + " #" + t); }
    }
    const lh = Math.max(2, Math.min(16, Math.floor(600 / Math.max(1, lanes.length))));
    const W = cv.clientWidth || 1200, H = Math.max(60, lanes.length * lh + 20);
    if (cv.width !== W) cv.width = W;
    if (cv.height !== H) cv.height = H;
    const g = cv.getContext("2d");
    g.clearRect(0, 0, W, H);
    const now = S.now + (performance.now() - S.at);
    const x = (t) => ((t - (now - WINDOW)) / WINDOW) * W;
    const kinds = new Set();
    for (const b of S.bars.values()) {
      const l = laneOf.get(b.worker + ":" + b.lane);
      if (l === undefined) continue;
      kinds.add(b.kind);
      g.fillStyle = b.failed ? "#000" : colour(b.kind);
      g.fillRect(x(b.start), l * lh, Math.max(1, x(b.end) - x(b.start)), lh - 1);
    }
    g.fillStyle = "#d00";
    for (const t of S.transfers) {
      const l = laneOf.get(t.worker + ":0");
      if (l !== undefined) g.fillRect(x(t.at), l * lh, 2, lh - 1);
    }
    g.fillStyle = "#666"; g.font = "11px sans-serif";
    g.fillText("-60 s", 2, H - 4); g.fillText("now", W - 26, H - 4);
    const lg = $("legend");
    if (lg.dataset.kinds !== [...kinds].join(",")) {
      lg.dataset.kinds = [...kinds].join(",");
      lg.replaceChildren();
      for (const k of kinds) { const s = el("span"); const i = el("i"); i.style.background = colour(k); s.appendChild(i); s.appendChild(document.createTextNode(k)); lg.appendChild(s); }
    }
  }
  setInterval(drawStream, 250);

  function show() {
    const page = (location.hash || "#cluster").slice(1);
    for (const s of document.querySelectorAll(".page")) s.classList.toggle("active", s.id === "page-" + page);
    for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.page === page);
    drawStream();
  }
  window.addEventListener("hashchange", show);
  show();

  const es = new EventSource("events?token=" + encodeURIComponent(token));
  es.onopen = () => { text($("conn"), "live"); $("conn").className = "conn"; };
  es.onerror = () => { text($("conn"), "reconnecting…"); $("conn").className = "conn down"; };
  es.onmessage = (e) => { apply(JSON.parse(e.data)); };
})();
