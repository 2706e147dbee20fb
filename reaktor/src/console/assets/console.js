"use strict";
// The reaktor operator console. Plain JavaScript, no dependencies, served inline by the
// reaktor (see console/page.rs). Data: /console/stream (server-sent events read with fetch,
// so the admin token travels in a header), /console/topology and /console/what-if.
(() => {
  const SVG_NS = "http://www.w3.org/2000/svg";
  const token = new URLSearchParams(location.search).get("token");
  const auth = token ? { Authorization: "Bearer " + token } : {};

  const KIND_COLORS = {
    tcp: "#4f8ef7", "tcp.out": "#7aa7ff", tls: "#2bb3a3", http: "#3fb950", ws: "#39c5cf",
    echo: "#9aa4b2", switch: "#f0883e", metrics: "#a371f7", console: "#db61a2", lines: "#c9d1d9",
  };
  const colorOf = (kind) => KIND_COLORS[kind] || "#c9d1d9";

  const state = {
    plan: null,
    history: [],
    historyPoints: 300,
    intervalMs: 1000,
    tick: null,
    selected: null,
    lastTickAt: 0,
    boxes: [],
    arrows: [],
  };

  // ---- small helpers -------------------------------------------------------------------
  const $ = (id) => document.getElementById(id);
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v;
      else node.setAttribute(k, v);
    }
    for (const c of children) node.append(c);
    return node;
  }
  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    for (const c of children) node.append(c);
    return node;
  }
  function rate(x) {
    if (x == null || !isFinite(x)) return "–";
    const a = Math.abs(x);
    if (a >= 1e9) return (x / 1e9).toFixed(1) + "G";
    if (a >= 1e6) return (x / 1e6).toFixed(1) + "M";
    if (a >= 1e4) return (x / 1e3).toFixed(0) + "k";
    if (a >= 1e3) return (x / 1e3).toFixed(1) + "k";
    if (a >= 10 || x === 0) return x.toFixed(0);
    return x.toFixed(1);
  }
  function nanos(ns) {
    if (ns == null || !isFinite(ns)) return "–";
    if (ns >= 1e6) return (ns / 1e6).toFixed(1) + " ms";
    if (ns >= 1e3) return (ns / 1e3).toFixed(1) + " µs";
    return ns.toFixed(0) + " ns";
  }
  function bytes(n) {
    if (n == null) return "–";
    if (n >= 1 << 20) return (n / (1 << 20)).toFixed(1) + " MiB";
    if (n >= 1 << 10) return (n / (1 << 10)).toFixed(1) + " KiB";
    return n + " B";
  }
  const pct = (x) => (x == null ? "–" : (x >= 10 ? x.toFixed(0) : x.toFixed(1)) + "%");
  function clock(seconds) {
    const s = Math.floor(seconds);
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
    return (h ? h + "h " : "") + (h || m ? m + "m " : "") + (s % 60) + "s";
  }

  // A sparkline of the last points: area and line, scaled to the window's maximum.
  function sparkline(target, values, color) {
    const w = 200, h = 30;
    target.setAttribute("viewBox", `0 0 ${w} ${h}`);
    target.setAttribute("preserveAspectRatio", "none");
    target.replaceChildren();
    // The window fills up from the right; until a minute is there, a minute spans the width.
    const vs = values.slice(-state.historyPoints);
    const n = Math.max(vs.length, Math.min(60, state.historyPoints));
    if (vs.length < 2) return;
    const max = Math.max(...vs.map((v) => v || 0), 1e-9);
    const x = (i) => w - (vs.length - 1 - i) * (w / (n - 1));
    const y = (v) => h - 2 - ((v || 0) / max) * (h - 4);
    const line = vs.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
    target.append(
      svg("polygon", { points: `${x(0).toFixed(1)},${h} ${line} ${w},${h}`, fill: color, "fill-opacity": "0.18" }),
      svg("polyline", { points: line, fill: "none", stroke: color, "stroke-width": "1.5", "vector-effect": "non-scaling-stroke" }),
    );
  }

  // ---- KPIs ------------------------------------------------------------------------------
  const KPIS = [
    { id: "rps", name: "requests / s", get: (p) => p.rps, fmt: rate, color: "#3fb950" },
    { id: "fps", name: "frames / s", get: (p) => p.fps, fmt: rate, color: "#58a6ff" },
    { id: "connections", name: "connections", get: (p) => p.connections, fmt: rate, color: "#4f8ef7" },
    { id: "ports", name: "switch ports", get: (p) => p.switch && p.switch.ports, fmt: rate, color: "#f0883e", sw: true },
    { id: "nodes", name: "switch nodes", get: (p) => p.switch && p.switch.nodes, fmt: rate, color: "#f0883e", sw: true },
    { id: "messages", name: "messages / s", get: (p) => p.switch && p.switch.messages, fmt: rate, color: "#e3b341", sw: true },
    { id: "drops", name: "drops / s", get: (p) => p.switch && p.switch.drops, fmt: rate, color: "#f85149", sw: true,
      total: (p) => p.switch && p.switch.drops_total },
    { id: "slow", name: "slow consumers cut", get: (p) => p.switch && p.switch.slow_total, fmt: rate, color: "#f85149", sw: true,
      total: (p) => p.switch && p.switch.slow },
  ];
  function buildKpis(hasSwitch) {
    const box = $("kpis");
    box.replaceChildren();
    for (const k of KPIS) {
      if (k.sw && !hasSwitch) continue;
      const value = el("div", { class: "value", "data-value": "" }, "–");
      const line = svg("svg", {});
      k.node = { card: el("div", { class: "kpi", "data-kpi": k.id }, el("div", { class: "name" }, k.name), value, line), value, line };
      box.append(k.node.card);
    }
  }
  function updateKpis() {
    const last = state.history[state.history.length - 1];
    if (!last) return;
    for (const k of KPIS) {
      if (!k.node) continue;
      const v = k.get(last);
      k.node.value.textContent = k.fmt(v);
      k.node.value.setAttribute("data-value", v == null ? "" : String(v));
      if (k.total) {
        const t = k.total(last);
        k.node.value.append(el("small", {}, k.id === "slow" ? `${rate(t)}/s` : `${rate(t)} in all`));
      }
      k.node.card.classList.toggle("alert", (k.id === "drops" || k.id === "slow") && v > 0);
      sparkline(k.node.line, state.history.map(k.get), k.color);
    }
  }

  // ---- topology ------------------------------------------------------------------------
  const GAP = 90, BOX_H = 60, BOX_GAP = 16, TOP = 34, SIDE = 34;

  // Draws `plan` into `target`; returns the boxes and arrows for live updates.
  function drawTopology(target, plan, options) {
    const small = options && options.small;
    target.replaceChildren();
    const rows = plan.cores.map((c) => c.instances.length);
    const maxRows = Math.max(1, ...rows);
    // Columns as wide as the panel allows, within reason.
    const room = small ? 0 : target.parentNode.clientWidth - SIDE - 16 - (plan.cores.length - 1) * GAP;
    const COL_W = Math.max(230, Math.min(360, Math.floor(room / plan.cores.length)));
    const width = SIDE + plan.cores.length * COL_W + (plan.cores.length - 1) * GAP + 16;
    const height = TOP + maxRows * (BOX_H + BOX_GAP) + 10;
    target.setAttribute("viewBox", `0 0 ${width} ${height}`);
    const scale = small ? 0.6 : 1;
    target.setAttribute("width", Math.round(width * scale));
    target.setAttribute("height", Math.round(height * scale));
    const defs = svg("defs", {});
    for (const [id, color] of [["arrow", "#8a93a6"], ["arrow-hot", "#d29922"], ["arrow-full", "#f85149"]]) {
      defs.append(svg("marker", { id: (small ? "s-" : "") + id, viewBox: "0 0 10 10", refX: "9", refY: "5", markerWidth: "7", markerHeight: "7", markerUnits: "userSpaceOnUse", orient: "auto-start-reverse" },
        svg("path", { d: "M0,0 L10,5 L0,10 z", fill: color })));
    }
    target.append(defs);
    const pos = [];
    const colX = (c) => SIDE + c * (COL_W + GAP);
    plan.cores.forEach((core, c) => {
      const g = svg("g", { class: "core", "data-core": String(core.core), "data-cpu": core.cpu == null ? "" : String(core.cpu) });
      g.append(svg("rect", { class: "core-bg", x: colX(c) - 12, y: 6, width: COL_W + 24 - 24, height: height - 10, rx: 8 }));
      const title = svg("text", { class: "core-title", x: colX(c), y: 22 });
      title.textContent = `core ${core.core}` + (core.cpu == null ? " · unpinned" : ` · cpu ${core.cpu}`);
      g.append(title);
      target.append(g);
      core.instances.forEach((i, row) => {
        pos[i] = { x: colX(c), y: TOP + row * (BOX_H + BOX_GAP), w: COL_W - 24, h: BOX_H, core: c, row };
      });
    });
    const arrowsLayer = svg("g", { class: "streams" });
    target.append(arrowsLayer);
    const arrows = plan.links.map((link, k) => {
      const a = pos[link.a], b = pos[link.b];
      let d;
      if (a.core === b.core) {
        const gap = Math.abs(a.row - b.row);
        if (gap === 1) {
          const [top, bottom] = a.row < b.row ? [a, b] : [b, a];
          const x = a.x + a.w / 2;
          d = a.row < b.row ? `M${x},${top.y + top.h} L${x},${bottom.y}` : `M${x},${bottom.y} L${x},${top.y + top.h}`;
        } else {
          const bulge = 10 + gap * 5;
          const ya = a.y + a.h / 2 + (a.row < b.row ? 8 : -8), yb = b.y + b.h / 2 + (a.row < b.row ? -8 : 8);
          d = `M${a.x},${ya} C${a.x - bulge},${ya} ${b.x - bulge},${yb} ${b.x},${yb}`;
        }
      } else {
        const right = b.core > a.core;
        const xa = right ? a.x + a.w : a.x, xb = right ? b.x : b.x + b.w;
        const ya = a.y + a.h / 2 + (right ? -6 : 6), yb = b.y + b.h / 2 + (right ? -6 : 6);
        const mid = (xa + xb) / 2;
        d = `M${xa},${ya} C${mid},${ya} ${mid},${yb} ${xb},${yb}`;
      }
      const from = plan.instances[link.a].name, to = plan.instances[link.b].name;
      const path = svg("path", {
        class: "stream" + (link.mesh ? " mesh" : ""), d,
        stroke: link.mesh ? "#a371f7" : "#8a93a6", "stroke-width": "1.2", "stroke-opacity": "0.5",
        "marker-end": `url(#${small ? "s-" : ""}arrow)`,
        "data-link": String(k), "data-from": from, "data-to": to, "data-rings": `${2 * k},${2 * k + 1}`,
        "data-hop": link.forth === link.back ? link.forth : `${link.forth} / ${link.back}`,
      });
      arrowsLayer.append(path);
      if (!small) {
        const hit = svg("path", { class: "stream-hit", d });
        for (const target of [path, hit]) target.addEventListener("click", () => select({ type: "link", index: k }));
        const title = svg("title", {});
        title.textContent = link.note;
        hit.append(title);
        arrowsLayer.append(hit);
      }
      return { path, link, index: k };
    });
    // A tcp split by direction: a dotted line to the tcp.out that writes its sockets.
    plan.instances.forEach((inst, i) => {
      if (inst.kind !== "tcp" || inst.pair == null) return;
      const a = pos[i], b = pos[inst.pair];
      arrowsLayer.append(svg("path", { d: `M${a.x + a.w},${a.y + 20} C${a.x + a.w + 40},${a.y + 20} ${b.x - 40},${b.y + 20} ${b.x},${b.y + 20}`,
        fill: "none", stroke: colorOf("tcp.out"), "stroke-dasharray": "2 3", "stroke-width": "1.5", "data-direction-pair": `${inst.name},${plan.instances[inst.pair].name}` }));
    });
    const boxes = plan.instances.map((inst, i) => {
      const p = pos[i];
      const color = colorOf(inst.kind);
      const g = svg("g", { class: "nukleus", "data-instance": inst.name, "data-kind": inst.kind, "data-core": String(inst.core), transform: `translate(${p.x},${p.y})` });
      const box = svg("rect", { class: "box", width: p.w, height: p.h, rx: 6, fill: color, "fill-opacity": "0.10", stroke: color });
      const bar = svg("rect", { x: 0, y: p.h - 4, width: 0, height: 4, rx: 2, fill: color });
      const kind = svg("text", { class: "kind", x: 10, y: 19 });
      kind.textContent = inst.kind;
      const name = svg("text", { class: "name", x: p.w - 8, y: 18, "text-anchor": "end" });
      name.textContent = inst.name;
      const numbers = svg("text", { class: "numbers", x: 10, y: 42 });
      numbers.textContent = small ? "" : "idle";
      g.append(box, bar, kind, name, numbers);
      if (!small) {
        g.addEventListener("click", () => select({ type: "instance", index: i }));
        const title = svg("title", {});
        title.textContent = inst.reasons.join("\n");
        g.append(title);
      }
      target.append(g);
      return { g, box, bar, numbers, width: p.w, inst };
    });
    return { boxes, arrows };
  }

  function updateTopology() {
    const tick = state.tick;
    if (!tick) return;
    const total = tick.instances.reduce((s, i) => s + i.busy, 0);
    state.boxes.forEach((b, i) => {
      const r = tick.instances[i];
      if (!r) return;
      // Fill: how busy the instance is; the bar: its share of its core.
      b.box.setAttribute("fill-opacity", (0.10 + Math.min(1, r.busy / 100) * 0.75).toFixed(2));
      b.bar.setAttribute("width", (b.width * Math.min(1, r.busy / 100)).toFixed(1));
      b.numbers.textContent = r.fps > 0 || r.busy > 0.05
        ? `${pct(r.busy)} · ${nanos(r.cpf)}/f · ${rate(r.fps)} f/s`
        : "idle";
      b.g.setAttribute("data-busy", r.busy.toFixed(3));
      b.g.setAttribute("data-fps", r.fps.toFixed(3));
      b.g.setAttribute("data-share", total > 0 ? (r.busy / total).toFixed(3) : "0");
    });
    state.arrows.forEach((a) => {
      const k = a.index;
      const occ = Math.max(tick.rings[2 * k] || 0, tick.rings[2 * k + 1] || 0);
      const fps = (tick.ring_fps[2 * k] || 0) + (tick.ring_fps[2 * k + 1] || 0);
      const cap = state.plan.rings[2 * k].capacity;
      const fill = occ / cap;
      const width = fps > 0 ? 1.2 + Math.min(4.8, Math.log10(1 + fps)) : 1.2;
      const hot = fill > 0.5 ? "full" : fill > 0.01 ? "hot" : "";
      a.path.setAttribute("stroke-width", width.toFixed(2));
      a.path.setAttribute("stroke-opacity", fps > 0 || occ > 0 ? "0.95" : "0.35");
      a.path.setAttribute("stroke", hot === "full" ? "#f85149" : hot === "hot" ? "#d29922" : a.link.mesh ? "#a371f7" : fps > 0 ? "#c9d1d9" : "#8a93a6");
      a.path.setAttribute("marker-end", `url(#arrow${hot ? "-" + hot : ""})`);
      a.path.setAttribute("data-occupancy", String(occ));
      a.path.setAttribute("data-fps", fps.toFixed(3));
    });
  }

  // Busy time per core, split by kind: where each core's time goes.
  function updateCores() {
    const tick = state.tick, plan = state.plan;
    const box = $("cores");
    box.style.gridTemplateColumns = `repeat(${plan.cores.length}, 1fr)`;
    if (box.children.length !== plan.cores.length) {
      box.replaceChildren(...plan.cores.map((c) => el("div", { class: "core-load", "data-core": String(c.core) },
        el("div", { class: "label" }, el("span", {}, `core ${c.core}`), el("span", {}, "–")), el("div", { class: "bar" }))));
    }
    plan.cores.forEach((c, n) => {
      const node = box.children[n];
      const busy = tick ? c.instances.reduce((s, i) => s + (tick.instances[i] ? tick.instances[i].busy : 0), 0) : 0;
      node.querySelector(".label span:last-child").textContent = `busy ${pct(busy)}`;
      const bar = node.querySelector(".bar");
      bar.replaceChildren(...c.instances.filter((i) => tick && tick.instances[i] && tick.instances[i].busy > 0).map((i) => {
        const s = el("span", {});
        s.style.width = `${Math.min(100, tick.instances[i].busy)}%`;
        s.style.background = colorOf(plan.instances[i].kind);
        s.title = `${plan.instances[i].name}: ${pct(tick.instances[i].busy)}`;
        return s;
      }));
    });
  }

  function buildLegend(plan) {
    const kinds = [...new Set(plan.instances.map((i) => i.kind))];
    $("legend").replaceChildren(...kinds.map((k) => {
      const i = el("i", {});
      i.style.background = colorOf(k);
      return el("span", {}, i, k);
    }));
  }

  // ---- details ---------------------------------------------------------------------------
  function select(what) {
    state.selected = what;
    for (const b of state.boxes) b.g.classList.toggle("selected", what.type === "instance" && b === state.boxes[what.index]);
    for (const a of state.arrows) a.path.classList.toggle("selected", what.type === "link" && a.index === what.index);
    renderDetail();
  }
  function rows(pairs) {
    return el("table", {}, ...pairs.map(([k, v]) => el("tr", {}, el("td", {}, k), el("td", {}, v))));
  }
  function renderDetail() {
    const what = state.selected, plan = state.plan, tick = state.tick;
    if (!what || !plan) return;
    const detail = $("detail");
    detail.classList.remove("muted");
    if (what.type === "instance") {
      const inst = plan.instances[what.index];
      const r = tick && tick.instances[what.index];
      $("detail-title").textContent = inst.name;
      const pairs = [["kind", inst.kind], ["core", String(inst.core)]];
      if (r) {
        pairs.push(["busy", pct(r.busy)], ["frames / s", rate(r.fps)], ["cost per frame", nanos(r.cpf)], ["stream bytes / s", bytes(Math.round(r.bps)) + "/s"]);
        for (const [k, v] of Object.entries(r.gauges)) pairs.push([k.replace(/_/g, " "), rate(v)]);
      }
      detail.replaceChildren(rows(pairs), el("h2", {}, "Why here"), ...inst.reasons.map((t) => el("div", { class: "reason" }, t)));
    } else {
      const link = plan.links[what.index];
      const a = plan.instances[link.a].name, b = plan.instances[link.b].name;
      $("detail-title").textContent = `${a} ⇄ ${b}`;
      const ring = (n, label) => {
        const cap = plan.rings[n].capacity;
        const occ = tick ? tick.rings[n] : 0;
        return [[`${label} waiting`, `${bytes(occ)} of ${bytes(cap)}`], [`${label} frames / s`, tick ? rate(tick.ring_fps[n]) : "–"],
          [`${label} refused (full)`, tick ? String(tick.full[n]) : "–"]];
      };
      detail.replaceChildren(rows([["streams", link.mesh ? "the switch's mesh" : `${plan.instances[link.a].kind} → ${plan.instances[link.b].kind}`],
        ["forth", link.forth], ["back", link.back], ...ring(2 * what.index, "→"), ...ring(2 * what.index + 1, "←")]),
        el("div", { class: "reason" }, link.note));
    }
  }

  // ---- stages ----------------------------------------------------------------------------
  function buildStages(plan) {
    const kinds = [...new Set(plan.instances.map((i) => i.kind))];
    state.stageRows = kinds.map((kind) => {
      const swatch = el("i", {});
      swatch.style.background = colorOf(kind);
      const cells = { busy: el("td", {}), fps: el("td", {}), cpf: el("td", {}), line: svg("svg", {}) };
      const row = el("tr", { "data-stage": kind }, el("td", {}, swatch, kind),
        el("td", {}, String(plan.instances.filter((i) => i.kind === kind).length)), cells.busy, cells.fps, el("td", {}, cells.line), cells.cpf);
      return { kind, row, cells };
    });
    $("stages").replaceChildren(...state.stageRows.map((r) => r.row));
  }
  function updateStages() {
    const tick = state.tick, plan = state.plan;
    for (const r of state.stageRows || []) {
      let busy = 0, frames = 0, busyNs = 0;
      plan.instances.forEach((inst, i) => {
        if (inst.kind !== r.kind || !tick.instances[i]) return;
        const x = tick.instances[i];
        busy += x.busy;
        frames += x.fps;
        busyNs += (x.busy / 100) * 1e9;
      });
      r.cells.busy.textContent = pct(busy);
      r.cells.fps.textContent = rate(frames);
      r.cells.cpf.textContent = frames > 0 ? nanos(busyNs / frames) : "–";
      sparkline(r.cells.line, state.history.map((p) => p.stages[r.kind] || 0), colorOf(r.kind));
    }
  }

  // ---- events and cluster ----------------------------------------------------------------
  function addEvents(events) {
    if (!events || !events.length) return;
    const list = $("events");
    if (list.querySelector(".muted")) list.replaceChildren();
    for (const e of events) {
      const time = el("time", {}, clock(e.t));
      list.prepend(el("li", { "data-event": String(e.seq) }, time, e.text));
    }
    while (list.children.length > 50) list.lastChild.remove();
  }
  function updateCluster(cluster) {
    const box = $("cluster");
    if (!cluster) return;
    box.hidden = false;
    $("cluster-id").textContent = String(cluster.id);
    const role = $("cluster-role");
    role.textContent = cluster.role + (cluster.serving ? " (serving)" : "");
    role.setAttribute("data-role", cluster.role);
    $("cluster-epoch").textContent = cluster.epoch == null ? "–" : String(cluster.epoch);
    $("cluster-leader").textContent = cluster.leader == null ? "none" : String(cluster.leader);
  }

  // ---- the live stream -------------------------------------------------------------------
  function setStatus(s, text) {
    const node = $("status");
    node.setAttribute("data-state", s);
    node.querySelector("span").textContent = text || s;
  }
  function onHello(hello) {
    state.plan = hello.plan;
    state.history = hello.history.slice();
    state.historyPoints = hello.history_points;
    state.intervalMs = hello.interval_ms;
    $("process").textContent = `pid ${hello.pid} · ${hello.plan.placement} placement · ${hello.plan.cores.length} core(s) · ${hello.plan.instances.length} nuklei`;
    $("footer").textContent = `reaktor ${hello.version} · a tick every ${hello.interval_ms} ms, ${hello.history_points} kept · predicted by the planner: ${rate(hello.plan.prediction.throughput_rps)} req/s at the declared cost`;
    const hasSwitch = hello.plan.instances.some((i) => i.kind === "switch");
    buildKpis(hasSwitch);
    buildLegend(hello.plan);
    buildStages(hello.plan);
    const drawn = drawTopology($("topology"), hello.plan, {});
    state.boxes = drawn.boxes;
    state.arrows = drawn.arrows;
    $("topology").setAttribute("data-ready", "true");
    addEvents(hello.events);
    updateCluster(hello.cluster);
    updateCores();
    updateKpis();
    if (state.selected) select(state.selected);
  }
  function onTick(tick) {
    state.tick = tick;
    state.lastTickAt = Date.now();
    state.history.push(tick.point);
    if (state.history.length > state.historyPoints) state.history.splice(0, state.history.length - state.historyPoints);
    $("process").setAttribute("data-seq", String(tick.seq));
    updateTopology();
    updateCores();
    updateKpis();
    updateStages();
    addEvents(tick.events);
    updateCluster(tick.cluster);
    renderDetail();
    setStatus("live", `live · up ${clock(tick.point.t)}`);
  }
  function onEvent(raw) {
    let name = "message", data = "";
    for (const line of raw.split("\n")) {
      if (line.startsWith("event: ")) name = line.slice(7);
      else if (line.startsWith("data: ")) data += line.slice(6);
    }
    if (!data) return;
    const value = JSON.parse(data);
    if (name === "hello") onHello(value);
    else if (name === "tick" && state.plan) onTick(value);
    else if (name === "close") state.closedBecause = value.message;
  }
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  async function follow() {
    let backoff = 500;
    for (;;) {
      try {
        setStatus("connecting", "connecting");
        const res = await fetch("/console/stream", { headers: auth, cache: "no-store" });
        if (res.status === 401 || res.status === 403) {
          setStatus("down", `refused (${res.status}): open /console?token=ADMIN_TOKEN`);
          return;
        }
        if (!res.ok) throw new Error(`${res.status}: ${(await res.text()).slice(0, 200)}`);
        backoff = 500;
        const reader = res.body.getReader();
        const decoder = new TextDecoder();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += decoder.decode(value, { stream: true });
          let end;
          while ((end = buffer.indexOf("\n\n")) >= 0) {
            onEvent(buffer.slice(0, end));
            buffer = buffer.slice(end + 2);
          }
        }
        setStatus("down", `${state.closedBecause || "stream ended"}; reconnecting`);
        state.closedBecause = null;
      } catch (e) {
        setStatus("down", `disconnected (${e.message}); retrying`);
      }
      await sleep(backoff);
      backoff = Math.min(backoff * 2, 10000);
    }
  }
  setInterval(() => {
    if (state.lastTickAt && Date.now() - state.lastTickAt > 3 * state.intervalMs + 1000) setStatus("down", "no tick for a while");
  }, 1000);

  // ---- what-if ---------------------------------------------------------------------------
  async function loadTopology() {
    const res = await fetch("/console/topology", { headers: auth, cache: "no-store" });
    if (res.ok) $("whatif-text").value = await res.text();
  }
  function side(title, view, highlight) {
    const picture = svg("svg", {});
    drawTopology(picture, view, { small: true });
    const summary = view.planner ? view.planner.summary : [`explicit placement: ${view.cores.length} core(s), ${view.instances.length} nuklei`];
    const load = view.prediction.per_core.map((l, c) => `core ${c}: ${l.toFixed(2)}`).join(" · ");
    return el("div", { class: "side-" + title.toLowerCase() },
      el("h3", {}, title),
      el("div", { class: "big", "data-throughput": String(view.prediction.throughput_rps) }, `${rate(view.prediction.throughput_rps)} req/s`),
      el("div", { class: "muted" }, `busiest core ${view.prediction.load.toFixed(2)} per request · ${load}`),
      picture,
      el("ul", {}, ...summary.map((s) => el("li", {}, s))));
  }
  async function runWhatIf() {
    const button = $("whatif-run");
    const out = $("whatif-result");
    button.disabled = true;
    out.classList.remove("muted");
    out.replaceChildren("Planning…");
    try {
      const costs = $("whatif-measured").checked ? "measured" : "declared";
      const res = await fetch(`/console/what-if?costs=${costs}`, { method: "POST", headers: { ...auth, "Content-Type": "application/toml" }, body: $("whatif-text").value });
      const body = await res.json().catch(() => null);
      if (!res.ok || !body || body.error) {
        const message = body && body.error ? body.error.message : `HTTP ${res.status}`;
        out.replaceChildren(el("div", { class: "error", "data-error": "" }, message));
        return;
      }
      const ratio = body.ratio;
      const verdict = el("div", { class: "ratio " + (ratio >= 1.0 ? "up" : "down"), "data-ratio": String(ratio) },
        `${ratio >= 1 ? "+" : ""}${((ratio - 1) * 100).toFixed(1)}% predicted throughput (costs: ${body.costs})`);
      out.replaceChildren(verdict, el("div", { class: "compare" }, side("Running", body.current), side("Proposed", body.proposed)));
    } catch (e) {
      out.replaceChildren(el("div", { class: "error" }, e.message));
    } finally {
      button.disabled = false;
    }
  }
  let resizing = 0;
  window.addEventListener("resize", () => {
    clearTimeout(resizing);
    resizing = setTimeout(() => {
      if (!state.plan) return;
      const drawn = drawTopology($("topology"), state.plan, {});
      state.boxes = drawn.boxes;
      state.arrows = drawn.arrows;
      updateTopology();
      if (state.selected) select(state.selected);
    }, 200);
  });
  $("whatif-run").addEventListener("click", runWhatIf);
  $("whatif-reset").addEventListener("click", loadTopology);

  loadTopology();
  follow();
})();
