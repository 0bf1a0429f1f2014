// greenpool dashboard: polls /v1/pool (the default pool) every second and /v1/jobs (with the piles of those
// jobs) every two, draws the last five minutes; a click on a job shows it whole, with a cancel button while it
// can end; pools.js adds a panel per named pool, replicas.js the replicas of a cluster.
// Plain JS, no build step, nothing loaded from elsewhere. Every request has a timeout and a poll is only
// scheduled once the previous one has ended, so a slow or saturated server can never pile requests up
// or freeze the page; a failed poll shows the banner and the next success clears it.
// Authentication: when the API answers 401 the page asks for a bearer token (kept in sessionStorage for this
// tab only) and sends it as `Authorization: Bearer …` on every request; the resize form is enabled only for
// a token whose role is admin (GET /v1/whoami).
"use strict";

(() => {
  const POOL_EVERY_MS = 1000;
  const JOBS_EVERY_MS = 2000;
  const TIMEOUT_MS = 3000;
  const WINDOW_S = 300;
  const CAPACITY = WINDOW_S + 30; // samples kept (about one a second)
  const SERIES = ["running", "free", "waiting", "queued"];
  const COUNTERS = ["size", "running", "held", "free", "waiting", "queued", "delayed", "submitted", "succeeded",
    "failed", "cancelled", "timed_out"];

  const $ = (id) => document.getElementById(id);
  const css = getComputedStyle(document.documentElement);
  const colour = (name) => css.getPropertyValue("--" + name).trim() || "#333";

  // -- a fixed-size ring buffer of {t, running, free, waiting, queued} -------------------------------
  const ring = { items: new Array(CAPACITY), start: 0, length: 0 };
  function push(sample) {
    const end = (ring.start + ring.length) % CAPACITY;
    ring.items[end] = sample;
    if (ring.length < CAPACITY) ring.length += 1;
    else ring.start = (ring.start + 1) % CAPACITY;
  }
  function samples() {
    const out = [];
    for (let i = 0; i < ring.length; i += 1) out.push(ring.items[(ring.start + i) % CAPACITY]);
    return out;
  }

  // -- HTTP with a timeout and the optional bearer token ----------------------------------------------
  const TOKEN_KEY = "greenpool-token";
  let memoryToken = ""; // used when sessionStorage is unavailable
  function token() {
    try {
      return sessionStorage.getItem(TOKEN_KEY) || "";
    } catch (err) {
      return "";
    }
  }
  function setToken(value) {
    try {
      if (value) sessionStorage.setItem(TOKEN_KEY, value);
      else sessionStorage.removeItem(TOKEN_KEY);
    } catch (err) {
      // storage disabled: the token lasts until the page is reloaded
    }
    memoryToken = value;
  }
  function bearer() {
    return token() || memoryToken;
  }
  async function api(path, options = {}) {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), TIMEOUT_MS);
    const headers = Object.assign({ Accept: "application/json" }, options.headers || {});
    if (bearer()) headers.Authorization = "Bearer " + bearer();
    try {
      const resp = await fetch(path, Object.assign({}, options, {
        headers, signal: controller.signal, cache: "no-store",
      }));
      const body = await resp.json().catch(() => null);
      if (resp.status === 401) needToken();
      if (!resp.ok) {
        const detail = body && (body.detail || body.title);
        const error = new Error(`${path}: HTTP ${resp.status}${detail ? " — " + detail : ""}`);
        error.status = resp.status;
        error.problem = body; // the problem document: its `errors` name the fields
        throw error;
      }
      return body;
    } catch (err) {
      if (err.name === "AbortError") throw new Error(`${path}: no answer within ${TIMEOUT_MS / 1000} s`);
      if (err instanceof TypeError) throw new Error(`${path}: server unreachable (${err.message})`);
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  // -- the token form and the role ---------------------------------------------------------------------
  let role = null; // "admin", "submit", or null while unknown
  function needToken() {
    role = null;
    $("token-form").hidden = false;
    $("token-forget").hidden = !bearer();
    showRole();
  }
  const ADMIN_ONLY = "resizing needs an admin token";
  function showRole() {
    const admin = role === "admin";
    $("resize-size").disabled = !admin;
    $("resize-submit").disabled = !admin;
    const status = $("resize-status");
    if (!admin) {
      status.className = "muted";
      status.textContent = ADMIN_ONLY;
    } else if (status.textContent === ADMIN_ONLY) {
      status.textContent = "";
    }
  }
  async function whoami() {
    try {
      const me = await api("/v1/whoami");
      role = me.role;
      $("who").textContent = me.name ? `${me.name} (${me.role})` : "";
      $("token-form").hidden = true;
      $("token-forget").hidden = !bearer();
      report("auth", null);
    } catch (err) {
      role = null;
      $("who").textContent = "";
      report("auth", err);
    }
    showRole();
  }
  function useToken(event) {
    event.preventDefault();
    const value = $("token").value.trim();
    if (!value) return;
    setToken(value);
    $("token").value = "";
    whoami();
  }
  function forgetToken() {
    setToken("");
    $("token-forget").hidden = true;
    whoami();
  }

  // -- the banner: one message per failing source, cleared by that source's next success; a 401 from any
  // source is one message (a token is needed), cleared when /v1/whoami accepts a token -----------------
  const failures = new Map();
  const TOKEN_NEEDED = "HTTP 401: this server needs a bearer token; enter one above";
  function report(source, err) {
    if (err && err.status === 401) {
      failures.delete(source);
      failures.set("auth", TOKEN_NEEDED);
    } else if (err) failures.set(source, err.message || String(err));
    else failures.delete(source);
    const banner = $("banner");
    banner.hidden = failures.size === 0;
    banner.textContent = [...failures.values()].join(" · ");
  }

  // -- pool counters and the chart ---------------------------------------------------------------------
  let lastPool = null;
  function showPool(pool) {
    lastPool = pool;
    for (const key of COUNTERS) {
      const el = $("stat-" + key);
      if (el && pool[key] !== undefined) el.textContent = String(pool[key]);
    }
    const free = $("stat-free");
    if (pool.free < 0) free.textContent = `over by ${-pool.free}`; // shrunk below what is running: it drains
    free.parentElement.classList.toggle("over", pool.free < 0);
    $("stat-uptime").textContent = formatDuration(pool.uptime_s);
    const size = $("resize-size");
    if (document.activeElement !== size && size.value === "") size.placeholder = String(pool.size);
    $("status-line").textContent = "updated " + new Date().toLocaleTimeString();
    document.body.dataset.polls = String(Number(document.body.dataset.polls || 0) + 1);
  }

  function formatDuration(seconds) {
    if (typeof seconds !== "number") return "–";
    const s = Math.floor(seconds);
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    return (h ? h + "h " : "") + (h || m ? m + "m " : "") + (s % 60) + "s";
  }

  function niceStep(value) { // the smallest whole 1, 2 or 5 × 10^k at least `value`: integer ticks
    if (value <= 1) return 1;
    const magnitude = 10 ** Math.floor(Math.log10(value));
    for (const step of [1, 2, 5]) {
      if (step * magnitude >= value) return step * magnitude;
    }
    return 10 * magnitude;
  }

  // A cleared 2D context for `canvas` in CSS pixels (its backing store matched to the display's pixel ratio).
  function blank(canvas) {
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth || canvas.width;
    const height = canvas.clientHeight || canvas.height;
    if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
      canvas.width = Math.round(width * ratio);
      canvas.height = Math.round(height * ratio);
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);
    return { ctx, width, height };
  }

  function draw() {
    const canvas = $("chart");
    const { ctx, width, height } = blank(canvas);

    const pad = { left: 48, right: 10, top: 8, bottom: 22 };
    const plotW = width - pad.left - pad.right;
    const plotH = height - pad.top - pad.bottom;
    const data = samples();
    const now = Date.now() / 1000;
    let peak = 0;
    for (const s of data) for (const key of SERIES) peak = Math.max(peak, s[key]);
    const TICKS = 4;
    const step = niceStep(peak / TICKS);
    const top = step * TICKS;
    const x = (t) => pad.left + plotW * (1 - (now - t) / WINDOW_S);
    const y = (v) => pad.top + plotH * (1 - v / top);

    ctx.font = "11px system-ui, sans-serif";
    ctx.lineWidth = 1;
    ctx.strokeStyle = colour("line");
    ctx.fillStyle = colour("muted");
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (let i = 0; i <= TICKS; i += 1) {
      const v = step * i;
      ctx.beginPath();
      ctx.moveTo(pad.left, Math.round(y(v)) + 0.5);
      ctx.lineTo(pad.left + plotW, Math.round(y(v)) + 0.5);
      ctx.stroke();
      ctx.fillText(String(v), pad.left - 6, y(v));
    }
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    for (let m = 0; m <= WINDOW_S / 60; m += 1) {
      ctx.fillText(m === 0 ? "now" : `-${m}m`, x(now - m * 60), pad.top + plotH + 6);
    }

    ctx.save();
    ctx.beginPath();
    ctx.rect(pad.left, pad.top, plotW, plotH);
    ctx.clip();
    ctx.lineWidth = 2;
    ctx.lineJoin = "round";
    for (const key of SERIES) {
      ctx.strokeStyle = colour(key);
      ctx.beginPath();
      let started = false;
      for (const s of data) {
        if (now - s.t > WINDOW_S + 5) continue;
        if (started) ctx.lineTo(x(s.t), y(s[key]));
        else ctx.moveTo(x(s.t), y(s[key]));
        started = true;
      }
      ctx.stroke();
    }
    ctx.restore();
    canvas.dataset.samples = String(data.length);
    canvas.dataset.ticks = Array.from({ length: TICKS + 1 }, (_, i) => step * i).join(",");
  }

  let clockOffset = 0; // this browser's clock minus the server's (s), known once the history has loaded
  async function loadHistory() { // the server's last five minutes, so the chart is full when the page opens
    try {
      const history = await api("/v1/pool/history");
      const offset = (clockOffset = Date.now() / 1000 - history.now);
      for (const s of history.samples) {
        push({ t: s.t + offset, running: s.running, free: Math.max(0, s.free), waiting: s.waiting, queued: s.queued });
      }
      document.body.dataset.history = String(history.samples.length);
    } catch (err) {
      document.body.dataset.history = "0"; // an older server, or no token yet: the chart starts empty
    }
  }

  async function pollPool() {
    try {
      const pool = await api("/v1/pool");
      push({ t: Date.now() / 1000, running: pool.running, free: Math.max(0, pool.free), waiting: pool.waiting,
        queued: pool.queued });
      showPool(pool);
      report("pool", null);
    } catch (err) {
      report("pool", err);
      $("status-line").textContent = "not updated since " + (lastPool ? "the last success" : "the page loaded");
    }
    draw();
    setTimeout(pollPool, POOL_EVERY_MS);
  }

  // -- recent jobs ------------------------------------------------------------------------------------
  function cell(row, text, className, title) {
    const td = document.createElement("td");
    td.textContent = text;
    if (className) td.className = className;
    if (title) td.title = title;
    row.appendChild(td);
    return td;
  }

  function ranFor(job) {
    if (!job.started_at) return "–";
    const end = job.finished_at ? Date.parse(job.finished_at) : Date.now();
    return ((end - Date.parse(job.started_at)) / 1000).toFixed(2) + " s";
  }

  function showJobs(jobs) {
    const body = $("jobs-body");
    const rows = jobs.map((job) => {
      const row = document.createElement("tr");
      row.dataset.jobId = job.id;
      row.dataset.status = job.status;
      row.className = "clickable";
      row.title = "show this job";
      row.addEventListener("click", () => showDetail(job.id));
      const id = cell(row, "", null, job.id);
      const code = document.createElement("code");
      code.textContent = job.id.slice(0, 12);
      id.appendChild(code);
      cell(row, job.task);
      // attempt n of retries + 1 once a job may be retried; when it may start while it waits for it
      const tries = job.retries ? ` (attempt ${job.attempt} of ${job.retries + 1})` : "";
      const later = job.status === "queued" && job.not_before ? "not before " + new Date(job.not_before).toLocaleTimeString() : null;
      cell(row, job.status + tries, "status status-" + job.status, later);
      cell(row, job.submitted_at ? new Date(job.submitted_at).toLocaleTimeString() : "–");
      cell(row, ranFor(job));
      cell(row, job.error ? `${job.error.type}: ${job.error.message}` : "", "error");
      return row;
    });
    if (rows.length === 0) {
      const row = document.createElement("tr");
      const td = cell(row, "no jobs yet", "muted");
      td.colSpan = 6;
      rows.push(row);
    }
    body.replaceChildren(...rows);
  }

  async function pollJobs() {
    try {
      const page = await api("/v1/jobs?limit=20");
      showJobs(page.jobs);
      report("jobs", null);
      await pollPiles(page.jobs);
      if (detailId) await showDetail(detailId);
    } catch (err) {
      report("jobs", err);
    }
    setTimeout(pollJobs, JOBS_EVERY_MS);
  }

  // -- the piles of the recent jobs, with their progress ---------------------------------------------
  const MAX_PILES = 5;
  async function pollPiles(jobs) {
    const ids = [...new Set(jobs.map((job) => job.pile).filter(Boolean))].slice(0, MAX_PILES);
    const piles = [];
    for (const id of ids) {
      try {
        piles.push(await api(`/v1/piles/${encodeURIComponent(id)}`));
      } catch (err) {
        if (err.status !== 404) throw err; // expired since the job list was read: not shown
      }
    }
    $("piles").hidden = piles.length === 0;
    $("piles-body").replaceChildren(...piles.map((pile) => {
      const row = document.createElement("tr");
      row.dataset.pileId = pile.id;
      row.dataset.done = String(pile.done);
      const id = cell(row, "", null, pile.id);
      const code = document.createElement("code");
      code.textContent = pile.id.slice(0, 12);
      id.appendChild(code);
      const bar = document.createElement("progress");
      bar.max = Math.max(1, pile.size);
      bar.value = pile.done;
      cell(row, "").appendChild(bar);
      cell(row, `${pile.done} of ${pile.size}`);
      const unhappy = pile.failed + pile.cancelled + pile.timed_out;
      cell(row, unhappy ? `${unhappy} not succeeded` : "", unhappy ? "error" : null);
      cell(row, pile.closed ? "closed" : "open", "muted");
      return row;
    }));
  }

  // -- one job, whole: args, result or error, earlier attempts, and a cancel button ----------------------
  const ENDED = new Set(["succeeded", "failed", "cancelled", "timed_out"]);
  let detailId = null;
  async function showDetail(id) {
    detailId = id;
    let job;
    try {
      job = await api(`/v1/jobs/${encodeURIComponent(id)}`);
    } catch (err) {
      if (err.status === 404) $("detail-status").textContent = "this job's record has expired";
      else report("job", err);
      return;
    }
    report("job", null);
    if (detailId !== id) return; // another job was clicked meanwhile
    const panel = $("job-detail");
    panel.hidden = false;
    panel.dataset.jobId = job.id;
    panel.dataset.status = job.status;
    $("detail-id").textContent = job.id;
    const facts = [["task", job.task], ["status", job.status], ["pool", job.pool], ["pile", job.pile],
      ["timeout", job.timeout === null ? null : job.timeout + " s"], ["attempt", job.attempt],
      ["submitted", job.submitted_at], ["started", job.started_at], ["finished", job.finished_at],
      ["ran", ranFor(job)]];
    $("detail-facts").replaceChildren(...facts.filter(([, v]) => v !== null && v !== undefined).flatMap(([k, v]) => {
      const dt = document.createElement("dt");
      dt.textContent = k;
      const dd = document.createElement("dd");
      dd.textContent = String(v);
      return [dt, dd];
    }));
    $("detail-args").textContent = JSON.stringify(job.args, null, 2);
    const outcome = job.error ? `${job.error.type}: ${job.error.message}` : JSON.stringify(job.result, null, 2);
    $("detail-outcome-label").textContent = job.error ? "error" : "result";
    $("detail-outcome").textContent = outcome;
    $("detail-outcome").className = job.error ? "bad" : "";
    const attempts = job.attempts || [];
    $("detail-attempts").hidden = attempts.length === 0;
    $("detail-attempts-list").replaceChildren(...attempts.map((a) => {
      const li = document.createElement("li");
      li.textContent = `${a.status}${a.error ? " — " + a.error.type + ": " + a.error.message : ""}`;
      return li;
    }));
    $("detail-cancel").hidden = ENDED.has(job.status);
  }
  async function cancelDetail() {
    const status = $("detail-status");
    status.className = "muted";
    status.textContent = "cancelling…";
    try {
      const job = await api(`/v1/jobs/${encodeURIComponent(detailId)}`, { method: "DELETE" });
      status.className = "ok";
      status.textContent = `cancelled (${job.status})`;
    } catch (err) {
      status.className = "bad";
      status.textContent = err.message;
    }
    await showDetail(detailId);
  }
  function closeDetail() {
    detailId = null;
    $("job-detail").hidden = true;
    $("detail-status").textContent = "";
  }

  // -- resizing -----------------------------------------------------------------------------------------
  async function resize(event) {
    event.preventDefault();
    const input = $("resize-size");
    const status = $("resize-status");
    const size = Number(input.value);
    if (!Number.isInteger(size) || size < 0) {
      status.className = "bad";
      status.textContent = "give a whole number ≥ 0";
      return;
    }
    const button = $("resize-submit");
    button.disabled = true;
    status.className = "muted";
    status.textContent = "resizing…";
    try {
      const pool = await api("/v1/pool", {
        method: "PATCH",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ size }),
      });
      showPool(pool);
      status.className = "ok";
      status.textContent = `size is now ${pool.size}`;
      input.value = "";
    } catch (err) {
      status.className = "bad";
      const field = err.problem && err.problem.errors && err.problem.errors[0]; // e.g. "an integer from 0 to …"
      if (err.status === 401 || err.status === 403) status.textContent = "an admin token is required: " + err.message;
      else status.textContent = field ? `size: ${field.message}` : err.message;
    } finally {
      button.disabled = role !== "admin";
    }
  }

  // what pools.js (one panel per named pool) and replicas.js share of this page: its requests, banner, role,
  // drawing, table cells and the server's clock
  window.greenpool = { api, report, isAdmin: () => role === "admin", niceStep, colour, blank, cell,
    clockOffset: () => clockOffset };

  document.addEventListener("DOMContentLoaded", () => {
    $("resize-form").addEventListener("submit", resize);
    $("token-form").addEventListener("submit", useToken);
    $("token-forget").addEventListener("click", forgetToken);
    $("detail-cancel").addEventListener("click", cancelDetail);
    $("detail-close").addEventListener("click", closeDetail);
    whoami();
    window.addEventListener("resize", draw);
    loadHistory().then(pollPool);
    pollJobs();
  });
})();
