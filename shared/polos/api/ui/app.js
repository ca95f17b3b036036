// The Polos dashboard: plain JavaScript, no build step, no third-party code (it works offline).
// Every value from the API is put in the page as text (textContent, attributes), never parsed as HTML.
"use strict";

(() => {
  const KEY = "polos.apiKey";
  const SCOPE = "polos.keyScope"; // the key's scope (GET /api/v1/keys/me): what the page offers to do
  const POLL_MS = 1500;
  const RUN_STATUSES = ["queued", "running", "waiting", "completed", "failed", "cancelled", "skipped"];
  const CANCELLABLE = new Set(["queued", "waiting", "running"]);
  const FINISHED = new Set(["completed", "failed", "cancelled", "skipped"]);
  const PAGE_SIZES = [25, 50, 100];
  // The runs list's time range: created within the last ... (one select: one keyboard stop).
  const SINCE = { "": "any time", "15m": "last 15 min", "1h": "last hour", "24h": "last 24 h", "7d": "last 7 days" };
  const SINCE_MS = { "15m": 9e5, "1h": 36e5, "24h": 864e5, "7d": 6048e5 };

  const $ = (id) => document.getElementById(id);
  const main = $("main");
  const state = {
    paused: false,
    timer: null,
    view: null, // {name, params, refresh()}
    last: "", // JSON of the data last rendered, to skip identical re-renders
    workflows: null, // GET /api/v1/workflows: every workflow of the app (the pages start from it)
    cursors: [], // runs view: cursors of the pages before the current one
    cursor: null,
    afters: [], // events view: after_sequence_id of the pages before the current one
    after: 0,
    open: new Set(), // ids of <details> the user opened, kept open across refreshes
    closed: new Set(), // ... and of those the user closed (a traceback is drawn open)
    renderMs: 0,
    runsHash: "#/runs", // the runs list last shown, to go back to from a run
    scope: sessionStorage.getItem(SCOPE), // null until the key's scope is known
  };

  // ---- DOM: h("a", {href, class}, "text", child) builds elements; strings become text nodes ----------

  function h(tag, props, ...children) {
    const el = document.createElement(tag);
    for (const [name, value] of Object.entries(props || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
      else if (name === "class") el.className = value;
      else if (name === "style") el.style.cssText = value;
      else el.setAttribute(name, value === true ? "" : String(value));
    }
    append(el, children);
    return el;
  }

  function append(el, children) {
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }

  function replace(el, ...children) {
    el.replaceChildren();
    return append(el, children);
  }

  // ---- formatting ----------------------------------------------------------------------------------

  const ms = (iso) => (iso ? Date.parse(iso) : NaN);

  // Local time as HH:MM:SS (with the date when not today). Built by hand: the Intl formatters cost
  // about a millisecond a call, which a page of rows feels.
  const pad = (n) => String(n).padStart(2, "0");
  function time(iso) {
    const t = ms(iso);
    if (Number.isNaN(t)) return "—";
    const d = new Date(t);
    const now = new Date();
    const clock = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
    const sameDay = d.getFullYear() === now.getFullYear() && d.getMonth() === now.getMonth() && d.getDate() === now.getDate();
    return sameDay ? clock : `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${clock}`;
  }

  function duration(millis) {
    if (!Number.isFinite(millis) || millis < 0) return "—";
    if (millis < 1000) return `${Math.round(millis)} ms`;
    if (millis < 60000) return `${(millis / 1000).toFixed(millis < 10000 ? 2 : 1)} s`;
    const minutes = Math.floor(millis / 60000);
    if (minutes < 60) return `${minutes} m ${Math.round((millis % 60000) / 1000)} s`;
    if (minutes < 2880) return `${Math.floor(minutes / 60)} h ${minutes % 60} m`;
    return `${Math.floor(minutes / 1440)} d ${Math.floor((minutes % 1440) / 60)} h`;
  }

  // "3 d", "5 h", "12 min", "40 s": the rough size of a span, for "in …" and "… ago".
  function roughly(millis) {
    const s = Math.abs(millis) / 1000;
    if (s < 60) return `${Math.max(Math.round(s), 1)} s`;
    if (s < 3600) return `${Math.round(s / 60)} min`;
    if (s < 172800) return `${Math.round(s / 3600)} h`;
    return `${Math.round(s / 86400)} d`;
  }
  const relative = (t, now) => (t >= now ? `in ${roughly(t - now)}` : `${roughly(now - t)} ago`);

  // The browser's zone, named once: "UTC", "GMT+1", "CET" (Intl costs too much to call per cell).
  const ZONE = (() => {
    try {
      return new Date().toLocaleTimeString("en-US", { timeZoneName: "short" }).split(" ").pop();
    } catch (_) {
      return "local";
    }
  })();

  // Elements whose text follows the clock (durations of live runs, "wakes in …"): updated every second
  // by ticker() without re-rendering the page. kind "dur": since data-from; "rel": relative to data-at,
  // after the words in data-prefix ("wakes", "times out").
  function tickText(el, now) {
    const kind = el.dataset.tick;
    if (kind === "dur") return duration(now - Number(el.dataset.from));
    const at = Number(el.dataset.at);
    if (kind === "stamp") return `${el.dataset.clock} · ${relative(at, now)}`;
    const prefix = el.dataset.prefix ? `${el.dataset.prefix} ` : "";
    if (at <= now && el.dataset.past) return el.dataset.past;
    return prefix + relative(at, now);
  }
  function ticking(tag, props, data) {
    const el = h(tag, props);
    Object.assign(el.dataset, data);
    el.textContent = tickText(el, Date.now());
    return el;
  }
  setInterval(() => {
    const now = Date.now();
    for (const el of document.querySelectorAll("[data-tick]")) el.textContent = tickText(el, now);
  }, 1000);

  // A time as clock time with the zone and a relative form that keeps ticking: "14:03:22 CET · 5 min ago".
  function stamp(iso) {
    const t = ms(iso);
    if (Number.isNaN(t)) return h("span", { class: "muted" }, "—");
    return ticking("time", { datetime: iso, title: iso, class: "num" }, { tick: "stamp", at: String(t), clock: `${time(iso)} ${ZONE}` });
  }

  // How long a run has lasted: ticking while it is not finished.
  function runDuration(run) {
    const start = ms(run.created_at);
    if (FINISHED.has(run.status)) return h("span", { class: "num" }, duration(ms(run.updated_at) - start));
    return ticking("span", { class: "num live-duration" }, { tick: "dur", from: String(start) });
  }

  const json = (value) => JSON.stringify(value, null, 2);
  const short = (id) => (id && id.length > 14 ? `${id.slice(0, 8)}…${id.slice(-4)}` : id || "");
  const badge = (status) => h("span", { class: `badge s-${RUN_STATUSES.includes(status) ? status : "other"}` }, status);
  const runLink = (id, text) => h("a", { href: `#/runs/${enc(id)}`, class: "mono", title: id }, text || short(id));
  const usd = (v) => `$${v < 0.01 ? v.toFixed(6) : v.toFixed(4)}`;

  // What a waiting or queued run waits for, or why a run did not run, in a few words (lists and pages).
  function waitWords(w, status) {
    if (status === "skipped") return ["rate limited: not run"];
    if (!w) return [];
    const until = ms(w.until);
    const when = (prefix, past) => (Number.isFinite(until) ? ticking("span", {}, { tick: "rel", at: String(until), prefix, past }) : null);
    const timeout = when("times out", "timing out");
    switch (w.kind) {
      case "timer": return ["timer · ", when("wakes", "waking up")];
      case "event": return [`event on ${w.topic || "?"}`, timeout ? [" · ", timeout] : null];
      case "resume": return [`resume of step ${w.step}`, timeout ? [" · ", timeout] : null];
      case "child": return [w.child ? ["child run ", runLink(w.child)] : "a child run"];
      case "retry": return [`retry of step ${w.step} · `, when("next attempt", "retrying")];
      case "concurrency": return [`a slot of queue ${w.queue || "?"}`, w.key ? ` (key ${w.key})` : ""];
      case "throttle": return [`throttle${w.key ? ` (key ${w.key})` : ""}`, Number.isFinite(until) ? [" · ", when("runs", "running")] : null];
      default: return [w.kind];
    }
  }

  function toast(text, kind) {
    const el = $("toast");
    el.className = `toast ${kind || ""}`;
    el.textContent = text;
    el.hidden = false;
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => (el.hidden = true), 4000);
  }

  // ---- the API ---------------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, body) {
      super((body && (body.error || body.message)) || `HTTP ${status}`);
      this.status = status;
      this.body = body || {};
    }
  }

  async function api(path, options) {
    const key = sessionStorage.getItem(KEY);
    if (!key) {
      askKey();
      throw new ApiError(401, { error: "no API key" });
    }
    const init = { method: "GET", cache: "no-store", headers: { Authorization: `Bearer ${key}` } };
    if (options && options.body !== undefined) {
      init.method = "POST";
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(options.body);
    } else if (options && options.method) {
      init.method = options.method;
    }
    const response = await fetch(path, init);
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      body = null;
    }
    if (response.status === 401) {
      sessionStorage.removeItem(KEY);
      forgetScope();
      askKey((body && (body.error || body.message)) || "The key was refused.");
    }
    if (!response.ok) throw new ApiError(response.status, body);
    return body;
  }

  const query = (params) => {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined && v !== "") q.set(k, v);
    const text = q.toString();
    return text ? `?${text}` : "";
  };
  const enc = encodeURIComponent;
  const notFoundRoute = (err) => err instanceof ApiError && err.status === 404 && /^no route/.test(err.message);

  // ---- the key's scope: read keys see everything and change nothing -----------------------------------

  const isAdmin = () => state.scope === "admin";

  function forgetScope() {
    state.scope = null;
    sessionStorage.removeItem(SCOPE);
  }

  async function loadScope() {
    try {
      state.scope = (await api("/api/v1/keys/me")).scope || "admin";
    } catch (err) {
      if (!notFoundRoute(err)) throw err;
      state.scope = "admin"; // a server without key scopes: every key may do everything
    }
    sessionStorage.setItem(SCOPE, state.scope);
    applyScope();
  }

  // Actions the key may not take are not offered (run, publish, cancel, resume, rerun, redrive need an
  // admin key); a read key sees every page.
  function applyScope() {
    const admin = isAdmin();
    for (const el of document.querySelectorAll(".admin-only")) el.hidden = !admin;
    $("scope").hidden = admin || !state.scope;
    $("scope").textContent = admin || !state.scope ? "" : `${state.scope} key · view only`;
  }

  // Every workflow of the app (all pages of GET /api/v1/workflows), read once per tab and again by the
  // Workflows page; ``fresh`` reads it again.
  async function workflows(fresh) {
    if (state.workflows && !fresh) return state.workflows;
    const all = [];
    let cursor = null;
    do {
      const page = await api(`/api/v1/workflows${query({ cursor })}`);
      all.push(...page.workflows);
      cursor = page.next_cursor;
    } while (cursor);
    state.workflows = all;
    return all;
  }
  const topicsOf = (list) => [...new Set(list.filter((w) => w.trigger && w.trigger.topic).map((w) => w.trigger.topic))].sort();

  // ---- the key dialog --------------------------------------------------------------------------------

  function askKey(message) {
    const dialog = $("key-dialog");
    $("key-error").textContent = message || "";
    if (!dialog.open) dialog.showModal();
    $("key-input").focus();
  }

  $("key-dialog").addEventListener("cancel", (e) => {
    if (!sessionStorage.getItem(KEY)) e.preventDefault(); // no key yet: nothing to go back to
  });

  $("key-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const key = $("key-input").value.trim();
    if (!key) return;
    sessionStorage.setItem(KEY, key);
    forgetScope();
    try {
      await loadScope();
    } catch (err) {
      if (err.status !== 401) $("key-error").textContent = err.message;
      return;
    }
    if (state.scope === "publish") {
      sessionStorage.removeItem(KEY);
      forgetScope();
      $("key-error").textContent = "This key may only publish events; the dashboard needs a read or admin key.";
      return;
    }
    $("key-input").value = "";
    $("key-dialog").close();
    state.last = "";
    route();
  });

  $("forget").addEventListener("click", () => {
    sessionStorage.removeItem(KEY);
    forgetScope();
    askKey();
  });

  // ---- live updates ----------------------------------------------------------------------------------

  function setLive(text, kind) {
    const el = $("live");
    el.textContent = text;
    el.className = `live ${kind || ""}`;
  }

  async function tick() {
    clearTimeout(state.timer);
    state.timer = null;
    const blocked = document.hidden || state.paused || !sessionStorage.getItem(KEY) || $("key-dialog").open;
    if (!blocked && state.view) {
      const view = state.view;
      try {
        await view.refresh();
        if (view === state.view) setLive(`● Live · ${time(new Date().toISOString())}`, "ok");
      } catch (err) {
        if (view === state.view && err.status !== 401) setLive(`Error: ${err.message}`, "bad");
      }
    } else if (state.paused) {
      setLive("Paused", "paused");
    } else if (document.hidden) {
      setLive("Paused (tab hidden)", "paused");
    }
    if (!document.hidden) state.timer = setTimeout(tick, POLL_MS);
  }

  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && state.timer === null) tick();
  });

  function togglePause() {
    state.paused = !state.paused;
    $("pause").textContent = state.paused ? "Resume updates" : "Pause";
    $("pause").setAttribute("aria-pressed", String(state.paused));
    tick();
  }
  $("pause").addEventListener("click", togglePause);

  // Render ``data`` into ``target`` with ``draw`` unless it is what is shown already; focus and open
  // <details> survive the refresh (elements are matched by their data-k attribute).
  function show(target, data, draw) {
    const text = JSON.stringify(data);
    if (text === state.last && target.isConnected && target.childNodes.length) return;
    state.last = text;
    const focused = document.activeElement && document.activeElement.dataset.k;
    const started = performance.now();
    replace(target, draw(data));
    for (const el of target.querySelectorAll("details[data-k]")) {
      const k = el.dataset.k;
      if (state.open.has(k) || state.closed.has(k)) el.open = state.open.has(k); // else as drawn
      el.addEventListener("toggle", () => {
        (el.open ? state.open : state.closed).add(k);
        (el.open ? state.closed : state.open).delete(k);
      });
    }
    if (focused) {
      const again = target.querySelector(`[data-k="${CSS.escape(focused)}"]`);
      if (again) again.focus();
    }
    state.renderMs = performance.now() - started;
    document.body.dataset.renderMs = state.renderMs.toFixed(1);
  }

  function errorBox(err) {
    return h("div", { class: "panel error-box", role: "alert" }, h("strong", {}, "Could not load: "), err.message);
  }

  // ---- shared pieces: options, triggers, the table cells every list uses --------------------------------

  function triggerText(t) {
    if (!t) return "—";
    if (t.type === "event") return ["event ", h("a", { href: `#/events${query({ topic: t.topic })}`, class: "mono" }, t.topic)];
    if (t.type === "schedule") return ["schedule ", h("span", { class: "mono" }, t.cron), ` (${t.timezone || "UTC"})`];
    return "invoke only";
  }

  // Every option a workflow sets (queue, flow control, limits), whatever its shape: one chip each.
  function optionChips(wf) {
    const chips = [];
    if (wf.batch) chips.push(h("span", { class: "chip" }, `batch ${wf.batch.size}`, wf.batch.window_seconds !== null && wf.batch.window_seconds !== undefined ? ` / ${wf.batch.window_seconds} s` : ""));
    for (const [name, value] of Object.entries(wf.options || {})) {
      const text = value !== null && typeof value === "object" ? Object.entries(value).map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`).join(", ") : String(value);
      chips.push(h("span", { class: "chip", title: `${name}: ${JSON.stringify(value)}` }, `${name.replace(/_/g, " ")}: ${text}`));
    }
    return chips.length ? chips : h("span", { class: "muted" }, "—");
  }

  // A table whose rows are wholly clickable (each row's first link is where it goes); on a phone every
  // cell becomes a labelled line (style.css, data-label).
  function table(cls, columns, rows) {
    const body = document.createElement("tbody");
    for (const row of rows) {
      const tr = document.createElement("tr");
      tr.className = "clickable";
      row.forEach((cell, i) => {
        const td = document.createElement("td");
        td.dataset.label = columns[i];
        append(td, [cell]);
        tr.append(td);
      });
      body.append(tr);
    }
    body.addEventListener("click", (e) => {
      if (e.target.closest("a, button, summary, input, select")) return;
      const tr = e.target.closest("tr");
      const link = tr && tr.querySelector("a.row-link");
      if (link) location.hash = link.getAttribute("href");
    });
    return h("table", { class: `grid ${cls}` }, h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, c)))), body);
  }

  // ---- workflows -------------------------------------------------------------------------------------

  function workflowsView(params) {
    const filters = { prefix: params.get("prefix") || "", trigger: params.get("trigger") || "", topic: params.get("topic") || "" };
    const set = (name, value) => {
      const next = new URLSearchParams({ ...filters, [name]: value });
      for (const [k, v] of [...next]) if (!v) next.delete(k);
      location.hash = `#/workflows${next.toString() ? `?${next}` : ""}`;
    };
    const prefix = h("input", { id: "wf-prefix", type: "search", value: filters.prefix, placeholder: "id starts with…", autocomplete: "off", "data-primary": true });
    prefix.addEventListener("input", () => { filters.prefix = prefix.value.trim(); state.last = ""; refresh(); });
    prefix.addEventListener("change", () => set("prefix", prefix.value.trim()));
    const trigger = h("select", { id: "wf-trigger" }, [["", "any trigger"], ["event", "event"], ["schedule", "schedule"], ["invoke", "invoke only"]].map(([v, t]) => h("option", { value: v, selected: v === filters.trigger }, t)));
    trigger.addEventListener("change", () => set("trigger", trigger.value));
    const topic = h("select", { id: "wf-topic" }, h("option", { value: "" }, "any topic"));
    topic.addEventListener("change", () => set("topic", topic.value));
    const content = h("div", { id: "workflows-content" });
    replace(main, h("div", { class: "toolbar" }, h("h1", {}, "Workflows"),
      h("label", { for: "wf-prefix" }, "Workflow"), prefix,
      h("label", { for: "wf-trigger" }, "Trigger"), trigger,
      h("label", { for: "wf-topic" }, "Topic"), topic), content);

    const refresh = async () => {
      const all = await workflows(true);
      if (topic.options.length === 1) append(topic, topicsOf(all).map((t) => h("option", { value: t, selected: t === filters.topic }, t)));
      const shown = all.filter((w) => w.id.startsWith(filters.prefix) && (!filters.trigger || w.trigger.type === filters.trigger) && (!filters.topic || w.trigger.topic === filters.topic));
      show(content, { shown, admin: isAdmin() }, () => {
        if (!shown.length) return h("div", { class: "panel empty" }, all.length ? "No workflow matches these filters." : "This app has no workflows.");
        const hasCost = shown.some((w) => w.cost);
        const columns = ["Workflow", "Trigger", "Options", "Dead letters", ...(hasCost ? ["Cost / 1M runs"] : []), ""];
        const rows = shown.map((w) => [
          h("a", { href: `#/runs${query({ workflow_id: w.id })}`, class: "row-link mono", "data-k": `wf:${w.id}` }, w.id),
          triggerText(w.trigger),
          optionChips(w),
          w.dead_letters ? h("a", { href: `#/dead-letters${query({ workflow_id: w.id })}`, class: "dead-count" }, `${w.dead_letters} dead`) : h("span", { class: "muted num" }, w.dead_letters === null ? "?" : "0"),
          ...(hasCost ? [w.cost ? h("span", { class: "num", title: `${w.cost.runs_metered} runs metered` }, usd(w.cost.usd_per_million_runs)) : "—"] : []),
          isAdmin() ? h("button", { type: "button", class: "run-wf", "data-k": `runwf:${w.id}`, onclick: () => openRun(w.id) }, "Run…") : null,
        ]);
        return [h("div", { class: "panel flush" }, table("workflows", columns, rows)), h("p", { class: "muted" }, `${shown.length} of ${all.length} workflows`)];
      });
    };
    return { name: "workflows", refresh };
  }

  // ---- runs ------------------------------------------------------------------------------------------

  function runRows(runs) {
    return runs.map((run) => {
      const trigger = run.trigger || { type: "?", event_ids: [] };
      const events = trigger.event_ids.length;
      const why = waitWords(run.waiting_for, run.status);
      return [
        badge(run.status),
        h("a", { href: `#/runs/${enc(run.run_id)}`, "data-k": `run:${run.run_id}`, class: "row-link mono", title: run.run_id }, short(run.run_id)),
        run.workflow_id,
        `${run.parent_run_id ? "child run" : trigger.type === "invoke" ? "invoked" : trigger.type}${events ? ` · ${events} event${events > 1 ? "s" : ""}` : ""}`,
        why.length ? h("span", { class: "why" }, why) : "—",
        stamp(run.created_at),
        FINISHED.has(run.status) ? duration(ms(run.updated_at) - ms(run.created_at)) : runDuration(run),
        run.error ? h("span", { class: "muted ellipsis" }, `${run.error.type}: ${run.error.message}`) : "",
      ];
    });
  }

  function runsTable(runs) {
    return table("runs", ["Status", "Run", "Workflow", "Trigger", "Waiting for", "Created", "Duration", "Error"], runRows(runs));
  }

  function runsView(params) {
    const limit = PAGE_SIZES.includes(Number(params.get("limit"))) ? Number(params.get("limit")) : 50;
    const filters = { workflow_id: params.get("workflow_id") || "", status: params.get("status") || "", since: params.get("since") || "" };
    const setFilter = (name, value) => {
      const next = new URLSearchParams({ ...filters, limit: String(limit) });
      next.set(name, value);
      for (const [k, v] of [...next]) if (!v) next.delete(k);
      state.cursors = [];
      state.cursor = null;
      location.hash = `#/runs?${next}`;
    };
    const workflow = h("input", { id: "filter-workflow", type: "search", list: "workflow-list", value: filters.workflow_id, placeholder: "all workflows (prefix)", autocomplete: "off", "data-primary": true });
    workflow.addEventListener("change", () => setFilter("workflow_id", workflow.value.trim()));
    const status = h("select", { id: "filter-status" }, h("option", { value: "" }, "any status"), RUN_STATUSES.map((s) => h("option", { value: s, selected: s === filters.status }, s)));
    status.addEventListener("change", () => setFilter("status", status.value));
    const since = h("select", { id: "filter-since" }, Object.entries(SINCE).map(([v, t]) => h("option", { value: v, selected: v === filters.since }, t)));
    since.addEventListener("change", () => setFilter("since", since.value));
    const size = h("select", { id: "filter-limit", "aria-label": "Page size" }, PAGE_SIZES.map((n) => h("option", { value: n, selected: n === limit }, `${n} per page`)));
    size.addEventListener("change", () => setFilter("limit", size.value));
    const datalist = h("datalist", { id: "workflow-list" });
    const content = h("div", { id: "runs-content" });
    replace(
      main,
      h("div", { class: "toolbar" },
        h("h1", {}, "Runs"),
        h("label", { for: "filter-workflow" }, "Workflow"), workflow, datalist,
        h("label", { for: "filter-status" }, "Status"), status,
        h("label", { for: "filter-since" }, "Created"), since,
        size),
      content,
    );

    const refresh = async () => {
      const known = await workflows();
      if (!datalist.childNodes.length) replace(datalist, known.map((w) => h("option", { value: w.id })));
      // An exact id lists that workflow; anything else is a prefix of ids ("trial" finds "trial-signup").
      const exact = known.some((w) => w.id === filters.workflow_id);
      const created_after = SINCE_MS[filters.since] ? new Date(Date.now() - SINCE_MS[filters.since]).toISOString() : "";
      const wanted = { workflow_id: exact ? filters.workflow_id : "", workflow_prefix: exact ? "" : filters.workflow_id, status: filters.status, created_after, limit, cursor: state.cursor };
      const page = await api(`/api/v1/runs${query(wanted)}`);
      show(content, { runs: page.runs, next: page.next_cursor }, () => {
        const pageNo = state.cursors.length + 1;
        const first = (pageNo - 1) * limit + 1;
        const pager = h("div", { class: "pager" },
          h("button", { type: "button", id: "newer", "data-k": "newer", disabled: !state.cursors.length, onclick: () => { state.cursor = state.cursors.pop() || null; state.last = ""; refresh(); } }, "← Newer"),
          h("span", { class: "muted" }, page.runs.length ? `Runs ${first}–${first + page.runs.length - 1} · page ${pageNo}` : "No runs"),
          h("button", { type: "button", id: "older", "data-k": "older", disabled: !page.next_cursor, onclick: () => { state.cursors.push(state.cursor); state.cursor = page.next_cursor; state.last = ""; refresh(); } }, "Older →"),
        );
        if (!page.runs.length) {
          const hint = filters.workflow_id || filters.status || filters.since ? "No run matches these filters." : "No runs yet. Publish an event or run a workflow and its runs appear here.";
          return [h("div", { class: "panel empty" }, hint), pager];
        }
        return [h("div", { class: "panel flush" }, runsTable(page.runs)), pager];
      });
    };
    return { name: "runs", refresh };
  }

  // ---- one run ---------------------------------------------------------------------------------------

  function waitBanner(run) {
    const w = run.waiting_for;
    const words = waitWords(w, run.status);
    if (!words.length) return null;
    const step = w && (run.steps || []).find((s) => s.key === w.step);
    const lead = run.status === "queued" ? "Queued: waits for " : run.status === "skipped" ? "Skipped: " : `Step ${w.step} waits for `;
    const extra = [];
    if (w && w.kind === "resume") extra.push(isAdmin() ? " Use “Resume…” to continue it with data." : " An admin key can resume it.");
    return h("div", { class: "panel wait-box", id: "wait-box" }, lead, words, extra,
      step && step.data !== undefined ? [h("div", { class: "muted" }, "Data shown with the wait:"), h("pre", { id: "wait-data" }, json(step.data))] : null);
  }

  // A completed wait_for_event step's result is the event: link it on its topic's page.
  const eventOf = (result) => (result && typeof result === "object" && typeof result.id === "string" && typeof result.topic === "string" && "sequence_id" in result ? result : null);

  function stepWords(step) {
    if (step.waiting_for || (step.status === "waiting")) return step.status === "waiting" ? "waiting" : "waited";
    if (step.attempts === 0 || step.attempts === undefined) return "wait";
    return `${step.attempts} attempt${step.attempts === 1 ? "" : "s"}`;
  }

  function timeline(run) {
    const steps = run.steps || [];
    if (!steps.length) return h("p", { class: "muted" }, FINISHED.has(run.status) ? "This run has no steps." : "No step has run yet.");
    const now = Date.now();
    const starts = steps.map((s) => ms(s.started_at)).filter(Number.isFinite);
    const t0 = Math.min(ms(run.created_at), ...starts);
    const ends = steps.map((s) => (s.finished_at ? ms(s.finished_at) : now)).filter(Number.isFinite);
    const t1 = Math.max(FINISHED.has(run.status) ? ms(run.updated_at) : now, ...ends);
    const span = Math.max(t1 - t0, 1);
    const list = h("ol", { class: "timeline", "aria-label": "Steps" });
    const rerunnable = isAdmin() && FINISHED.has(run.status);
    steps.forEach((step, i) => {
      const start = ms(step.started_at);
      const end = step.finished_at ? ms(step.finished_at) : now;
      const left = Number.isFinite(start) ? ((start - t0) / span) * 100 : 0;
      const width = Number.isFinite(start) ? Math.max(((end - start) / span) * 100, 0.6) : 0;
      const waiting = run.waiting_for && run.waiting_for.step === step.key ? run.waiting_for : step.waiting_for || null;
      const detail = [];
      if (step.error) detail.push(h("div", { class: "step-error" }, h("strong", {}, step.error.type || "Error"), ": ", step.error.message || ""));
      if (step.last_error && !step.error) detail.push(h("div", { class: "step-error" }, "Last error: ", h("strong", {}, step.last_error.type), ": ", step.last_error.message));
      if (step.next_attempt_at) detail.push(h("div", { class: "step-wait" }, ticking("span", {}, { tick: "rel", at: String(ms(step.next_attempt_at)), prefix: "next attempt", past: "retrying now" })));
      if (waiting && step.status === "waiting") detail.push(h("div", { class: "step-wait" }, "Waits for ", waitWords(waiting, "waiting")));
      if (step.child_run_id) detail.push(h("div", { class: "step-child" }, "Child run ", runLink(step.child_run_id)));
      const event = step.status === "completed" ? eventOf(step.result) : null;
      if (event) detail.push(h("div", { class: "step-event" }, "Satisfied by event ", h("a", { href: `#/events${query({ topic: event.topic, focus: event.id })}`, class: "mono event-link" }, `${event.topic} #${event.sequence_id}`)));
      if ("result" in step) detail.push(h("details", { "data-k": `step:${run.run_id}:${step.key}` }, h("summary", {}, "Result"), h("pre", {}, json(step.result))));
      list.append(
        h("li", { class: `step s-${step.status}` },
          h("div", { class: "step-head" },
            h("span", { class: "step-no muted" }, String(i + 1)),
            h("span", { class: "step-key mono", title: step.key }, step.key),
            badge(step.status),
            h("span", { class: "muted" }, stepWords(step)),
            Number.isFinite(start) && !step.finished_at ? ticking("span", { class: "num" }, { tick: "dur", from: String(start) }) : h("span", { class: "num" }, Number.isFinite(start) ? duration(end - start) : "—"),
            h("div", { class: "bar-track", title: `started ${time(step.started_at)}, finished ${time(step.finished_at)}` },
              h("div", { class: `bar s-${step.status}`, style: `left:${left.toFixed(2)}%;width:${width.toFixed(2)}%` })),
            rerunnable ? h("button", { type: "button", class: "rerun-step small", "data-k": `rerunstep:${step.key}`, title: `Rerun this run from step ${step.key}`, onclick: () => rerun(run, step.key) }, "Rerun from here") : null),
          detail),
      );
    });
    return list;
  }

  function attemptsPanel(run) {
    const history = run.attempt_history || [];
    if (!history.length) return null;
    const rows = history.map((a) => [
      h("span", { class: "num" }, `#${a.attempt}`),
      badge(a.outcome),
      stamp(a.started_at),
      a.finished_at ? h("span", { class: "num" }, duration(ms(a.finished_at) - ms(a.started_at))) : a.outcome === "running" ? ticking("span", { class: "num" }, { tick: "dur", from: String(ms(a.started_at)) }) : "—",
      a.error ? h("div", {}, h("strong", {}, a.error.type), ": ", a.error.message,
        a.error.traceback ? h("details", { "data-k": `tb:${run.run_id}:${a.attempt}`, class: "traceback" }, h("summary", {}, "Traceback"), h("pre", {}, a.error.traceback)) : null)
        : a.outcome === "lost" ? h("span", { class: "muted" }, "ended without an outcome (timed out or lost its lease)") : "",
    ]);
    return h("section", { class: "panel", id: "attempts" }, h("h2", {}, `Attempts (${history.length})`), h("div", { class: "flush-table" }, table("attempts", ["Attempt", "Outcome", "Started", "Took", "Error"], rows)));
  }

  async function control(run, action, body) {
    try {
      const answer = await api(`/api/v1/runs/${enc(run.run_id)}/${action}`, { body: body || {} });
      toast(`Run ${short(run.run_id)}: ${answer && answer.status ? answer.status : action + " sent"}`, "ok");
      state.last = "";
      if (state.view) state.view.refresh();
      return answer || true;
    } catch (err) {
      toast(`${action} failed: ${err.message}`, "bad");
      return false;
    }
  }

  // POST /api/v1/runs/{id}/rerun (from a step or from the start): the new run's page opens.
  async function rerun(run, fromStep) {
    const answer = await control(run, "rerun", fromStep ? { from_step: fromStep } : {});
    const id = answer && (answer.run_id || answer.new_run_id);
    if (id && id !== run.run_id) location.hash = `#/runs/${enc(id)}`;
  }

  async function redrive(workflowId) {
    try {
      const answer = await api(`/api/v1/workflows/${enc(workflowId)}/dead-letters/redrive`, { body: {} });
      toast(`Moved ${answer.moved} message${answer.moved === 1 ? "" : "s"} back to ${workflowId}'s queue`, "ok");
    } catch (err) {
      toast(`Redrive failed: ${err.message}`, "bad");
    }
    state.last = "";
    if (state.view) state.view.refresh();
  }

  function openResume(run) {
    const dialog = $("resume-dialog");
    $("resume-step").value = (run.waiting_for && run.waiting_for.step) || "";
    $("resume-data").value = "{}";
    $("resume-error").textContent = "";
    dialog.dataset.run = run.run_id;
    dialog.showModal();
    $("resume-data").focus();
  }

  // JSON typed in a form: the value, or null with the problem shown in ``errorEl``.
  function parseJson(text, errorEl, what, objectOnly) {
    let value;
    try {
      value = JSON.parse(text);
    } catch (err) {
      errorEl.textContent = `${what} is not JSON: ${err.message}`;
      return undefined;
    }
    if (objectOnly && (value === null || typeof value !== "object" || Array.isArray(value))) {
      errorEl.textContent = `${what} must be a JSON object ({…}).`;
      return undefined;
    }
    return value;
  }

  $("resume-cancel").addEventListener("click", () => $("resume-dialog").close());
  $("resume-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const data = parseJson($("resume-data").value || "{}", $("resume-error"), "Data", true);
    if (data === undefined) return;
    const dialog = $("resume-dialog");
    if (await control({ run_id: dialog.dataset.run }, "resume", { step_key: $("resume-step").value, data })) dialog.close();
  });

  // ---- the run and publish forms ----------------------------------------------------------------------

  async function openRun(workflowId) {
    const select = $("run-workflow");
    const list = await workflows().catch(() => []);
    replace(select, list.map((w) => h("option", { value: w.id, selected: w.id === workflowId }, w.id)));
    $("run-error").textContent = "";
    $("run-dialog").showModal();
    $("run-payload").focus();
  }

  $("open-run").addEventListener("click", () => openRun(state.view && state.view.workflowId));
  $("run-cancel").addEventListener("click", () => $("run-dialog").close());
  $("run-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    $("run-error").textContent = "";
    const payload = parseJson($("run-payload").value || "null", $("run-error"), "Payload", false);
    if (payload === undefined) return;
    const workflowId = $("run-workflow").value;
    try {
      const answer = await api(`/api/v1/workflows/${enc(workflowId)}/run`, { body: { payload } });
      $("run-dialog").close();
      toast(`Started run ${short(answer.run_id)} of ${workflowId}`, "ok");
      location.hash = `#/runs/${enc(answer.run_id)}`;
    } catch (err) {
      $("run-error").textContent = err.message;
    }
  });

  async function openPublish(topic) {
    const list = await workflows().catch(() => []);
    replace($("publish-topics"), topicsOf(list).map((t) => h("option", { value: t })));
    if (topic) $("publish-topic").value = topic;
    $("publish-error").textContent = "";
    $("publish-dialog").showModal();
    (topic ? $("publish-data") : $("publish-topic")).focus();
  }

  $("open-publish").addEventListener("click", () => openPublish(state.view && state.view.topic));
  $("publish-cancel").addEventListener("click", () => $("publish-dialog").close());
  $("publish-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    $("publish-error").textContent = "";
    const data = parseJson($("publish-data").value || "{}", $("publish-error"), "Data", true);
    if (data === undefined) return;
    const topic = $("publish-topic").value.trim();
    const eventType = $("publish-type").value.trim();
    try {
      const answer = await api("/api/v1/events/publish", { body: { topic, events: [{ data, ...(eventType ? { event_type: eventType } : {}) }] } });
      $("publish-dialog").close();
      const published = answer.events[0];
      toast(`Published event #${published.sequence_id} on ${published.topic}`, "ok");
      location.hash = `#/events${query({ topic: published.topic, focus: published.id })}`;
    } catch (err) {
      $("publish-error").textContent = err.message;
    }
  });

  function triggerFact(run, execution) {
    if (run.parent_run_id) return ["invoked by parent run ", h("a", { href: `#/runs/${enc(run.parent_run_id)}`, class: "mono parent-link", title: run.parent_run_id }, short(run.parent_run_id))];
    const type = run.trigger ? run.trigger.type : "—";
    if (type === "invoke") return "invoked through the API";
    if (type === "schedule") return "its schedule";
    return [type, " ", eventLinks(run, execution)];
  }

  function eventLinks(run, execution) {
    const ids = (run.trigger && run.trigger.event_ids) || [];
    if (!ids.length) return "";
    const payload = execution && execution.payload;
    const events = payload ? (Array.isArray(payload.events) ? payload.events : [payload]) : [];
    const topics = new Map(events.filter((e) => e && e.id).map((e) => [e.id, e.topic]));
    return ids.map((id) => {
      const topic = topics.get(id);
      return topic ? h("a", { href: `#/events${query({ topic, focus: id })}`, class: "mono chip", title: `${topic} · ${id}` }, `${topic} · ${short(id)}`) : h("span", { class: "mono chip" }, short(id));
    });
  }

  function costFact(cost) {
    const by = Object.entries(cost.by_service || {}).map(([k, v]) => `${k} ${usd(v)}`).join(", ");
    return h("span", { class: "num", title: by }, usd(cost.usd), ` · ${cost.requests} requests`);
  }

  function runView(runId) {
    const content = h("div", { id: "run-content" });
    replace(main, content);
    const view = { name: "run", refresh: null, workflowId: null };
    view.refresh = async () => {
      const [run, execution] = await Promise.all([
        api(`/api/v1/runs/${enc(runId)}`),
        api(`/api/v1/executions/${enc(runId)}`).catch(() => null),
      ]);
      view.workflowId = run.workflow_id;
      show(content, { run, execution, admin: isAdmin() }, () => {
        const actions = h("div", { class: "actions" });
        const admin = isAdmin();
        if (admin && CANCELLABLE.has(run.status)) actions.append(h("button", { type: "button", id: "cancel-run", class: "danger", "data-k": "cancel", onclick: () => control(run, "cancel") }, "Cancel run"));
        if (admin && run.status === "waiting" && run.waiting_for && run.waiting_for.kind === "resume") actions.append(h("button", { type: "button", id: "resume-run", class: "primary", "data-k": "resume", onclick: () => openResume(run) }, "Resume…"));
        if (admin && run.dead_lettered) actions.append(h("button", { type: "button", id: "redrive-run", "data-k": "redrive", title: `Move ${run.workflow_id}'s dead letters back to its queue: this run runs again`, onclick: () => redrive(run.workflow_id) }, "Redrive"));
        if (admin && FINISHED.has(run.status)) actions.append(h("button", { type: "button", id: "rerun-run", "data-k": "rerun", onclick: () => rerun(run) }, "Rerun"));
        const facts = [
          ["Workflow", h("a", { href: `#/runs${query({ workflow_id: run.workflow_id })}` }, run.workflow_id)],
          ["Trigger", triggerFact(run, execution)],
          ["Attempts", String(run.attempts)],
          ["Created", stamp(run.created_at)],
          ["Updated", stamp(run.updated_at)],
          ["Duration", runDuration(run)],
        ];
        if (run.rerun_of) facts.push(["Rerun of", runLink(run.rerun_of)]);
        if (run.cost) facts.push(["Cost", costFact(run.cost)]);
        if (run.dead_lettered) facts.push(["Dead letter", h("a", { href: `#/dead-letters${query({ workflow_id: run.workflow_id, run: run.run_id })}`, id: "dead-letter-link" }, "in the dead-letter queue")]);
        const children = run.children || [];
        const lastFailed = [...(run.attempt_history || [])].reverse().find((a) => a.error && a.error.traceback);
        return [
          h("div", { class: "crumbs" }, h("a", { href: state.runsHash, "data-k": "back" }, "← Runs")),
          h("div", { class: "run-head" }, h("h1", { class: "mono run-id" }, run.run_id), badge(run.status), h("span", { class: "spacer" }), actions),
          h("dl", { class: "facts panel" }, facts.map(([k, v]) => h("div", {}, h("dt", {}, k), h("dd", {}, v)))),
          waitBanner(run),
          run.error ? h("div", { class: "panel error-box" }, h("strong", {}, run.error.type), ": ", run.error.message,
            lastFailed ? h("details", { "data-k": `err-tb:${run.run_id}`, class: "traceback", open: true }, h("summary", {}, `Traceback (attempt ${lastFailed.attempt})`), h("pre", { id: "traceback" }, lastFailed.error.traceback)) : null) : null,
          children.length ? h("section", { class: "panel", id: "children" }, h("h2", {}, `Child runs (${children.length})`), h("div", { class: "chips" }, children.map((id) => h("a", { href: `#/runs/${enc(id)}`, class: "chip mono child-link", title: id }, short(id))))) : null,
          h("section", { class: "panel" }, h("h2", {}, `Steps (${(run.steps || []).length})`), timeline(run)),
          attemptsPanel(run),
          "state" in run ? h("section", { class: "panel" }, h("h2", {}, "State"), h("pre", { id: "state" }, json(run.state))) : null,
          h("div", { class: "two" },
            h("section", { class: "panel" }, h("h2", {}, "Payload"), execution ? h("pre", { id: "payload" }, json(execution.payload)) : h("p", { class: "muted" }, "Unavailable")),
            h("section", { class: "panel" }, h("h2", {}, "Result"), h("pre", { id: "result" }, json(run.result)))),
        ];
      });
    };
    return view;
  }

  // ---- events ----------------------------------------------------------------------------------------

  // The runs of the events shown: the runs of the topic's workflows created since the page's first event
  // (one bounded listing per subscribed workflow, whatever this tab saw before).
  async function runsByEvent(topic, events) {
    const index = new Map();
    if (!events.length) return index;
    const subscribers = (await workflows()).filter((w) => w.trigger && w.trigger.topic === topic);
    const since = events.map((e) => e.created_at).sort()[0];
    const pages = await Promise.all(subscribers.map((w) => api(`/api/v1/runs${query({ workflow_id: w.id, created_after: since, limit: 100 })}`)));
    for (const page of pages) for (const run of page.runs) for (const id of (run.trigger && run.trigger.event_ids) || []) {
      if (!index.has(id)) index.set(id, []);
      index.get(id).push(run);
    }
    return index;
  }

  function eventsView(params) {
    const topic = params.get("topic") || "";
    const focus = params.get("focus") || "";
    const input = h("input", { id: "topic", type: "search", list: "topic-list", value: topic, placeholder: "e.g. user/signup", autocomplete: "off", required: true, "data-primary": true });
    const datalist = h("datalist", { id: "topic-list" });
    const form = h("form", { class: "toolbar", role: "search" },
      h("h1", {}, "Events"),
      h("label", { for: "topic" }, "Topic"), input, datalist,
      h("button", { type: "submit", class: "primary" }, "Show"));
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      state.afters = [];
      state.after = 0;
      location.hash = `#/events${query({ topic: input.value.trim() })}`;
    });
    const content = h("div", { id: "events-content" });
    replace(main, form, content);
    const fillTopics = async () => {
      const topics = topicsOf(await workflows());
      if (!datalist.childNodes.length) replace(datalist, topics.map((t) => h("option", { value: t })));
      return topics;
    };
    if (!topic) {
      const refresh = async () => {
        const topics = await fillTopics();
        show(content, { topics }, () => topics.length
          ? h("div", { class: "panel" }, h("h2", {}, "Topics the app's workflows listen to"), h("div", { class: "chips", id: "topics" }, topics.map((t) => h("a", { href: `#/events${query({ topic: t })}`, class: "chip mono row-link", "data-k": `topic:${t}` }, t))))
          : h("div", { class: "panel empty" }, "No workflow is triggered by a topic. Choose a topic to see its events."));
      };
      return { name: "events", refresh };
    }
    const refresh = async () => {
      fillTopics();
      const page = await api(`/api/v1/events${query({ topic, after_sequence_id: state.after, limit: 50 })}`);
      const index = await runsByEvent(topic, page.events);
      const rows = page.events.map((e) => ({ ...e, runs: (index.get(e.id) || []).map((r) => ({ run_id: r.run_id, workflow_id: r.workflow_id, status: r.status })) }));
      show(content, { rows, next: page.next_after_sequence_id }, () => {
        const pager = h("div", { class: "pager" },
          h("button", { type: "button", disabled: !state.afters.length, onclick: () => { state.after = state.afters.pop() || 0; state.last = ""; refresh(); } }, "← Earlier"),
          h("span", { class: "muted" }, rows.length ? `Sequence ${rows[0].sequence_id}–${rows[rows.length - 1].sequence_id}` : "No events"),
          h("button", { type: "button", disabled: !page.next_after_sequence_id, onclick: () => { state.afters.push(state.after); state.after = page.next_after_sequence_id; state.last = ""; refresh(); } }, "Later →"));
        if (!rows.length) return [h("div", { class: "panel empty" }, "No events on this topic yet."), pager];
        const body = h("tbody", {});
        for (const e of rows) {
          body.append(h("tr", { class: e.id === focus ? "focused" : null, id: e.id === focus ? "focused-event" : null },
            h("td", { class: "num", "data-label": "Seq" }, String(e.sequence_id)),
            h("td", { class: "mono", title: e.id, "data-label": "Event" }, short(e.id)),
            h("td", { "data-label": "Type" }, e.event_type || h("span", { class: "muted" }, "—")),
            h("td", { "data-label": "Published" }, stamp(e.created_at)),
            h("td", { "data-label": "Data" }, h("details", { "data-k": `event:${e.id}` }, h("summary", { class: "mono ellipsis" }, JSON.stringify(e.data)), h("pre", {}, json(e.data)))),
            h("td", { "data-label": "Runs" }, e.runs.length ? e.runs.map((r) => h("a", { href: `#/runs/${enc(r.run_id)}`, class: "chip row-link", "data-k": `run:${r.run_id}` }, badge(r.status), " ", r.workflow_id)) : h("span", { class: "muted" }, "—"))));
        }
        const head = h("thead", {}, h("tr", {}, ["Seq", "Event", "Type", "Published", "Data", "Runs"].map((c) => h("th", { scope: "col" }, c))));
        return [h("div", { class: "panel flush" }, h("table", { class: "grid events" }, head, body)), pager];
      });
    };
    return { name: "events", refresh, topic };
  }

  // ---- dead letters ----------------------------------------------------------------------------------

  const deadItems = (body) => (Array.isArray(body) ? body : Object.values(body || {}).find(Array.isArray) || []);

  function deadLettersView(params) {
    const workflow = params.get("workflow_id") || "";
    const highlight = params.get("run") || "";
    const content = h("div", { id: "dead-content" });
    replace(main, h("div", { class: "toolbar" }, h("h1", {}, "Dead letters"), workflow ? h("a", { href: "#/dead-letters" }, "← All workflows") : null), content);
    const refresh = async () => {
      if (!workflow) {
        // Every workflow, with its dead-letter queue's depth (GET /api/v1/workflows: any read key).
        const all = await workflows(true);
        return show(content, { all, admin: isAdmin() }, () => {
          if (!all.length) return h("div", { class: "panel empty" }, "This app has no workflows.");
          const rows = all.map((w) => [
            h("a", { href: `#/dead-letters${query({ workflow_id: w.id })}`, class: "row-link mono", "data-k": `dl:${w.id}` }, w.id),
            h("span", { class: "num" }, w.dead_letters === null ? "?" : String(w.dead_letters)),
            isAdmin() && w.dead_letters ? h("button", { type: "button", class: "redrive", "data-k": `redrive:${w.id}`, onclick: () => redrive(w.id) }, "Redrive") : null,
          ]);
          return h("div", { class: "panel flush" }, table("dead", ["Workflow", "Dead letters", ""], rows));
        });
      }
      if (!isAdmin()) return show(content, { scope: state.scope }, () => h("div", { class: "panel empty" }, "Dead letters need an admin key."));
      let supported = true;
      const [items, failed] = await Promise.all([
        api(`/api/v1/workflows/${enc(workflow)}/dead-letters`).then(deadItems, (err) => {
          if (!notFoundRoute(err)) throw err;
          supported = false;
          return [];
        }),
        // The errors of the workflow's failed runs (one listing), shown with their dead letters.
        api(`/api/v1/runs${query({ workflow_id: workflow, status: "failed", limit: 100 })}`).then((p) => p.runs, () => []),
      ]);
      const errors = new Map(failed.map((r) => [r.run_id, r.error]));
      show(content, { items, errors: [...errors], supported }, () => {
        if (!supported) return h("div", { class: "panel empty" }, "This server has no dead-letter routes, so there is nothing to show or redrive.");
        return [
          h("div", { class: "run-head" }, h("h2", {}, `${workflow}: ${items.length} dead letter${items.length === 1 ? "" : "s"}`), h("span", { class: "spacer" }),
            items.length ? h("button", { type: "button", class: "primary redrive", "data-k": `redrive:${workflow}`, onclick: () => redrive(workflow) }, "Redrive all") : null),
          items.length ? h("div", { class: "panel" }, h("ol", { class: "plain dead-letters" }, items.map((item, i) => {
            const error = item && errors.get(item.run_id);
            return h("li", { class: item && item.run_id === highlight ? "focused" : null, "data-run": item && item.run_id },
              item && item.run_id ? ["Run ", runLink(item.run_id, item.run_id)] : h("span", { class: "mono" }, `#${i + 1}`),
              item && item.sent_at ? [" · ", stamp(item.sent_at)] : null,
              item && item.event ? [" · event ", h("a", { href: `#/events${query({ topic: item.event.topic, focus: item.event.id })}`, class: "mono" }, `${item.event.topic} #${item.event.sequence_id}`)] : null,
              error ? h("div", { class: "step-error dl-error" }, h("strong", {}, error.type), ": ", error.message) : item && item.error ? h("div", { class: "step-error dl-error" }, item.error) : null,
              h("details", { "data-k": `dlitem:${workflow}:${i}` }, h("summary", {}, "Message"), h("pre", {}, json(item))));
          }))) : h("div", { class: "panel empty" }, "No dead letters."),
        ];
      });
    };
    return { name: "dead-letters", refresh, workflowId: workflow || null };
  }

  // ---- routing and keys ------------------------------------------------------------------------------

  function route() {
    const hash = location.hash.replace(/^#/, "") || "/workflows";
    const [path, search] = hash.split("?");
    const params = new URLSearchParams(search || "");
    const parts = path.split("/").filter(Boolean);
    let view;
    if (parts[0] === "runs" && parts[1]) view = runView(decodeURIComponent(parts[1]));
    else if (parts[0] === "events") view = eventsView(params);
    else if (parts[0] === "dead-letters") view = deadLettersView(params);
    else if (parts[0] === "runs") view = runsView(params);
    else view = workflowsView(params);
    const section = view.name === "run" ? "runs" : view.name;
    if (view.name === "runs") state.runsHash = location.hash || "#/runs";
    for (const a of document.querySelectorAll("nav a")) a.setAttribute("aria-current", a.dataset.nav === section ? "page" : "false");
    if (!state.view || state.view.name !== view.name) {
      state.cursors = [];
      state.cursor = null;
      state.afters = [];
      state.after = 0;
    }
    state.view = view;
    state.last = "";
    document.title = `Polos · ${section}`;
    applyScope();
    if (!sessionStorage.getItem(KEY)) askKey();
    else if (state.scope) tick();
    else loadScope().then(tick, (err) => setLive(`Error: ${err.message}`, "bad"));
  }

  function typing(el) {
    return el && (el.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(el.tagName));
  }

  document.addEventListener("keydown", (e) => {
    if (document.querySelector("dialog[open]") || e.altKey || e.ctrlKey || e.metaKey) return;
    const active = document.activeElement;
    if (e.key === "Escape") {
      if (typing(active)) return active.blur();
      if (state.view && state.view.name === "run") location.hash = state.runsHash;
      return;
    }
    if (typing(active)) return;
    if (e.key === "/") {
      const primary = main.querySelector("[data-primary]");
      if (primary) {
        e.preventDefault();
        primary.focus();
      }
    } else if (e.key === "p") {
      togglePause();
    } else if (e.key === "ArrowDown" || e.key === "ArrowUp") {
      const links = [...main.querySelectorAll("a.row-link")];
      if (!links.length) return;
      e.preventDefault();
      const at = links.indexOf(active);
      const next = at < 0 ? 0 : Math.min(Math.max(at + (e.key === "ArrowDown" ? 1 : -1), 0), links.length - 1);
      links[next].focus();
    }
  });

  window.addEventListener("hashchange", route);
  // For measuring: how long the runs table takes to build for ``runs`` (see tests/browser).
  window.polosDashboard = { runsTable, lastRenderMs: () => state.renderMs };
  route();
})();
