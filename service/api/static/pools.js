// greenpool dashboard, named pools: one panel per pool (GET /v1/pools every second), each with its counters,
// a five-minute chart of running and queued jobs (full at once: GET /v1/pools/{name}/history), and its own
// resize form (PUT /v1/pools/{name}; admin tokens
// only, as the page's role says). It uses the page's requests, banner and role (window.greenpool, set by
// dashboard.js); like the main view, a poll is scheduled only once the previous one has ended. Each answer is
// also handed on as a "greenpool:pools" event (replicas.js shows the replicas from it).
"use strict";

(() => {
  const EVERY_MS = 1000;
  const WINDOW_S = 300;
  const CAPACITY = WINDOW_S + 30; // samples kept per pool (about one a second)
  const KEYS = ["size", "running", "free", "queued", "submitted", "succeeded", "failed"];
  const SERIES = ["running", "queued"];
  const gp = window.greenpool;
  const panels = new Map(); // pool name -> {root, values, canvas, input, button, status, samples}

  function element(tag, className, text) {
    const el = document.createElement(tag);
    if (className) el.className = className;
    if (text !== undefined) el.textContent = text;
    return el;
  }

  function makePanel(name) {
    const root = element("div", "pool");
    root.dataset.pool = name;
    root.appendChild(element("h3", null, name));
    const numbers = element("div", "pool-numbers");
    const values = {};
    for (const key of KEYS) {
      const item = element("span", "pool-number " + key);
      item.appendChild(element("span", "label", key + " "));
      values[key] = item.appendChild(element("span", "value", "–"));
      values[key].dataset.key = key;
      numbers.appendChild(item);
    }
    root.appendChild(numbers);
    const canvas = root.appendChild(element("canvas", "pool-chart"));
    canvas.width = 320;
    canvas.height = 90;
    canvas.setAttribute("aria-label", `running and queued jobs of pool ${name} over time`);
    const form = root.appendChild(element("form", "pool-form"));
    form.autocomplete = "off";
    const input = element("input", "pool-size");
    Object.assign(input, { type: "number", min: "0", step: "1", required: true });
    input.setAttribute("aria-label", `new size of pool ${name}`);
    const button = element("button", "pool-resize", "Resize");
    button.type = "submit";
    const status = element("span", "pool-status muted");
    status.setAttribute("role", "status");
    form.append(input, button, status);
    const panel = { root, values, canvas, input, button, status, samples: [] };
    form.addEventListener("submit", (event) => resize(event, name, panel));
    preload(name, panel);
    return panel;
  }

  // The chart full at once: the server's samples of the pool's last five minutes, before the page's own.
  async function preload(name, panel) {
    try {
      const history = await gp.api(`/v1/pools/${encodeURIComponent(name)}/history`);
      const offset = Date.now() / 1000 - history.now; // this browser's clock minus the server's
      const first = panel.samples.length ? panel.samples[0].t : Infinity;
      const older = history.samples.map((s) => ({ t: s.t + offset, running: s.running, queued: s.queued }));
      panel.samples.unshift(...older.filter((s) => s.t < first));
      panel.samples.splice(0, Math.max(0, panel.samples.length - CAPACITY));
      panel.root.dataset.history = String(older.length);
    } catch (err) {
      panel.root.dataset.history = "0"; // an older server, or no token yet: the chart starts empty
    }
  }

  function show(panel, pool) {
    for (const key of KEYS) panel.values[key].textContent = String(pool[key]);
    if (document.activeElement !== panel.input && panel.input.value === "") panel.input.placeholder = String(pool.size);
    const admin = gp.isAdmin();
    panel.input.disabled = !admin;
    if (!panel.busy) panel.button.disabled = !admin;
    if (!admin && !panel.status.textContent) panel.status.textContent = "resizing needs an admin token";
    else if (admin && panel.status.textContent === "resizing needs an admin token") panel.status.textContent = "";
  }

  function draw(panel, size) {
    const canvas = panel.canvas;
    const { ctx, width, height } = gp.blank(canvas);
    const now = Date.now() / 1000;
    let peak = size;
    for (const s of panel.samples) for (const key of SERIES) peak = Math.max(peak, s[key]);
    const top = 2 * gp.niceStep(peak / 2); // two whole-number steps
    const x = (t) => width * (1 - (now - t) / WINDOW_S);
    const y = (v) => 4 + (height - 8) * (1 - v / top);
    ctx.fillStyle = gp.colour("muted");
    ctx.font = "10px system-ui, sans-serif";
    ctx.textBaseline = "top";
    ctx.fillText(String(top), 2, 2);
    ctx.lineWidth = 2;
    for (const key of SERIES) {
      ctx.strokeStyle = gp.colour(key);
      ctx.beginPath();
      panel.samples.forEach((s, i) => (i ? ctx.lineTo(x(s.t), y(s[key])) : ctx.moveTo(x(s.t), y(s[key]))));
      ctx.stroke();
    }
    canvas.dataset.samples = String(panel.samples.length);
  }

  function render(pools) {
    const box = document.getElementById("pools");
    const seen = new Set();
    const t = Date.now() / 1000;
    for (const pool of pools) {
      seen.add(pool.name);
      let panel = panels.get(pool.name);
      if (!panel) panels.set(pool.name, (panel = makePanel(pool.name)));
      box.appendChild(panel.root); // in the API's order: default first, then by name
      panel.samples.push({ t, running: pool.running, queued: pool.queued });
      if (panel.samples.length > CAPACITY) panel.samples.shift();
      show(panel, pool);
      draw(panel, pool.size);
    }
    for (const [name, panel] of panels) {
      if (!seen.has(name)) {
        panel.root.remove();
        panels.delete(name);
      }
    }
    document.body.dataset.poolPolls = String(Number(document.body.dataset.poolPolls || 0) + 1);
  }

  async function resize(event, name, panel) {
    event.preventDefault();
    const size = Number(panel.input.value);
    const status = panel.status;
    if (panel.input.value === "" || !Number.isInteger(size) || size < 0) {
      status.className = "pool-status bad";
      status.textContent = "give a whole number ≥ 0";
      return;
    }
    panel.busy = true;
    panel.button.disabled = true;
    status.className = "pool-status muted";
    status.textContent = "resizing…";
    try {
      const pool = await gp.api("/v1/pools/" + encodeURIComponent(name), {
        method: "PUT",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ size }),
      });
      show(panel, pool);
      status.className = "pool-status ok";
      status.textContent = `size is now ${pool.size}`;
      panel.input.value = "";
    } catch (err) {
      status.className = "pool-status bad";
      status.textContent = err.message;
    } finally {
      panel.busy = false;
      panel.button.disabled = !gp.isAdmin();
    }
  }

  async function poll() {
    try {
      const pools = (await gp.api("/v1/pools")).pools;
      render(pools);
      document.dispatchEvent(new CustomEvent("greenpool:pools", { detail: pools }));
      gp.report("pools", null);
    } catch (err) {
      gp.report("pools", err);
    }
    setTimeout(poll, EVERY_MS);
  }

  document.addEventListener("DOMContentLoaded", poll);
})();
