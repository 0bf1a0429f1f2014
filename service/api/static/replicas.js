// greenpool dashboard, cluster mode: the replicas sharing one Redis, from the `replicas` field of each pool in
// GET /v1/pools (pools.js polls it and hands each answer on as a "greenpool:pools" event, so no request is
// added): each replica's id, the jobs it runs (in all pools, and by pool) and how long ago it was last seen,
// on the server's clock. With a memory or sqlite store the field is absent and the section stays hidden.
"use strict";

(() => {
  const gp = window.greenpool;
  const cell = gp.cell;

  function age(seconds) { // "just now", "4 s ago", "2m 5s ago", "1h 3m ago"
    const s = Math.max(0, Math.floor(seconds));
    if (s < 1) return "just now";
    if (s < 60) return `${s} s ago`;
    if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s ago`;
    return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m ago`;
  }

  // replica id -> {running, pools: ["db 2", …], seen (s since the epoch, server clock)}, or null if no pool
  // carries the field (not cluster mode)
  function gather(pools) {
    let cluster = false;
    const replicas = new Map();
    for (const pool of pools) {
      if (!Array.isArray(pool.replicas)) continue;
      cluster = true;
      for (const r of pool.replicas) {
        let entry = replicas.get(r.id);
        if (!entry) replicas.set(r.id, (entry = { running: 0, pools: [], seen: -Infinity }));
        entry.running += r.running;
        if (r.running) entry.pools.push(`${pool.name} ${r.running}`);
        entry.seen = Math.max(entry.seen, Date.parse(r.last_seen) / 1000);
      }
    }
    return cluster ? replicas : null;
  }

  function render(pools) {
    const section = document.getElementById("replicas");
    const replicas = gather(pools);
    section.hidden = replicas === null;
    if (replicas === null) return;
    const now = Date.now() / 1000 - gp.clockOffset(); // the server's clock, as last_seen is
    const ids = [...replicas.keys()].sort();
    document.getElementById("replicas-body").replaceChildren(...ids.map((id) => {
      const replica = replicas.get(id);
      const row = document.createElement("tr");
      row.dataset.replicaId = id;
      row.dataset.running = String(replica.running);
      const code = document.createElement("code");
      code.textContent = id;
      cell(row, "").appendChild(code);
      cell(row, String(replica.running), "running");
      cell(row, replica.pools.join(" · ") || "–", "muted");
      cell(row, age(now - replica.seen), "seen", new Date(replica.seen * 1000).toISOString());
      return row;
    }));
    document.getElementById("replicas-count").textContent = String(ids.length);
    section.dataset.polls = String(Number(section.dataset.polls || 0) + 1);
  }

  document.addEventListener("greenpool:pools", (event) => render(event.detail));
})();
