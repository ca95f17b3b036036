// The Polos dashboard: plain JavaScript, no build step, no third-party code (it works offline).
// Every value from the API is put in the page as text (textContent, attributes), never parsed as HTML.
"use strict";

(() => {
  const KEY = "polos.apiKey";
  const SCOPE = "polos.keyScope"; // the key's scope (GET /api/v1/keys/me): what the page offers to do
  const POLL_MS = 1500;
  const RUN_STATUSES = ["queued", "running", "waiting", "completed", "failed", "cancelled"];
  const CANCELLABLE = new Set(["queued", "waiting", "running"]);
  const FINISHED = new Set(["completed", "failed", "cancelled"]);
  const PAGE_SIZES = [25, 50, 100];
  const RUNS_INDEX_PAGES = 3; // events view: runs are matched to events among the 300 newest runs

  const $ = (id) => document.getElementById(id);
  const main = $("main");
  const state = {
    paused: false,
    timer: null,
    view: null, // {name, params, refresh()}
    last: "", // JSON of the data last rendered, to skip identical re-renders
    workflows: new Set(JSON.parse(sessionStorage.getItem("polos.workflows") || "[]")),
    topics: new Set(JSON.parse(sessionStorage.getItem("polos.topics") || "[]")),
    cursors: [], // runs view: cursors of the pages before the current one
    cursor: null,
    afters: [], // events view: after_sequence_id of the pages before the current one
    after: 0,
    open: new Set(), // ids of <details> the user opened, kept open across refreshes
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
    return `${Math.floor(minutes / 60)} h ${minutes % 60} m`;
  }

  const json = (value) => JSON.stringify(value, null, 2);
  const short = (id) => (id && id.length > 14 ? `${id.slice(0, 8)}…${id.slice(-4)}` : id || "");
  const badge = (status) => h("span", { class: `badge s-${RUN_STATUSES.includes(status) ? status : "other"}` }, status);

  function toast(text, kind) {
    const el = $("toast");
    el.className = `toast ${kind || ""}`;
    el.textContent = text;
    el.hidden = false;
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => (el.hidden = true), 4000);
  }

  function remember(set, name, values) {
    const before = set.size;
    for (const v of values) if (v) set.add(v);
    if (set.size !== before) sessionStorage.setItem(name, JSON.stringify([...set].sort()));
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

  // Actions the key may not take are not offered: dead letters (listing and redrive) need an admin key.
  function applyScope() {
    const admin = isAdmin();
    document.querySelector('nav a[data-nav="dead-letters"]').hidden = !admin;
    $("scope").hidden = admin || !state.scope;
    $("scope").textContent = admin || !state.scope ? "" : `${state.scope} key · view only`;
  }

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
      el.open = state.open.has(el.dataset.k);
      el.addEventListener("toggle", () => (el.open ? state.open.add(el.dataset.k) : state.open.delete(el.dataset.k)));
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

  // ---- runs ------------------------------------------------------------------------------------------

  function runRows(runs) {
    const body = h("tbody", {});
    const now = Date.now();
    for (const run of runs) {
      const end = FINISHED.has(run.status) ? ms(run.updated_at) : now;
      const trigger = run.trigger || { type: "?", event_ids: [] };
      const events = trigger.event_ids.length;
      body.append(
        h(
          "tr",
          {},
          h("td", {}, badge(run.status)),
          h("td", { class: "mono" }, h("a", { href: `#/runs/${enc(run.run_id)}`, "data-k": `run:${run.run_id}`, class: "row-link", title: run.run_id }, run.run_id)),
          h("td", {}, run.workflow_id),
          h("td", { class: "muted" }, trigger.type, events ? ` · ${events} event${events > 1 ? "s" : ""}` : ""),
          h("td", { class: "num" }, String(run.attempts)),
          h("td", { class: "num" }, time(run.created_at)),
          h("td", { class: "num" }, duration(end - ms(run.created_at))),
          h("td", { class: "muted ellipsis" }, run.error ? `${run.error.type}: ${run.error.message}` : ""),
        ),
      );
    }
    return body;
  }

  function runsTable(runs) {
    return h(
      "table",
      { class: "grid runs" },
      h("thead", {}, h("tr", {}, ["Status", "Run", "Workflow", "Trigger", "Attempts", "Created", "Duration", "Error"].map((c) => h("th", { scope: "col" }, c)))),
      runRows(runs),
    );
  }

  function runsView(params) {
    const limit = PAGE_SIZES.includes(Number(params.get("limit"))) ? Number(params.get("limit")) : 50;
    const filters = { workflow_id: params.get("workflow_id") || "", status: params.get("status") || "" };
    const setFilter = (name, value) => {
      const next = new URLSearchParams({ ...filters, limit: String(limit) });
      next.set(name, value);
      for (const [k, v] of [...next]) if (!v) next.delete(k);
      state.cursors = [];
      state.cursor = null;
      location.hash = `#/runs?${next}`;
    };
    const workflow = h("input", { id: "filter-workflow", type: "search", list: "workflow-list", value: filters.workflow_id, placeholder: "all workflows", autocomplete: "off", "data-primary": true });
    workflow.addEventListener("change", () => setFilter("workflow_id", workflow.value.trim()));
    const status = h("select", { id: "filter-status" }, h("option", { value: "" }, "any status"), RUN_STATUSES.map((s) => h("option", { value: s, selected: s === filters.status }, s)));
    status.addEventListener("change", () => setFilter("status", status.value));
    const size = h("select", { id: "filter-limit" }, PAGE_SIZES.map((n) => h("option", { value: n, selected: n === limit }, `${n} per page`)));
    size.addEventListener("change", () => setFilter("limit", size.value));
    const datalist = h("datalist", { id: "workflow-list" });
    const content = h("div", { id: "runs-content" });
    replace(
      main,
      h("div", { class: "toolbar" },
        h("h1", {}, "Runs"),
        h("label", { for: "filter-workflow" }, "Workflow"), workflow, datalist,
        h("label", { for: "filter-status" }, "Status"), status,
        size),
      content,
    );

    const refresh = async () => {
      const page = await api(`/api/v1/runs${query({ ...filters, limit, cursor: state.cursor })}`);
      remember(state.workflows, "polos.workflows", page.runs.map((r) => r.workflow_id));
      if (datalist.childNodes.length !== state.workflows.size) replace(datalist, [...state.workflows].sort().map((w) => h("option", { value: w })));
      show(content, page, () => {
        const pageNo = state.cursors.length + 1;
        const first = (pageNo - 1) * limit + 1;
        const pager = h("div", { class: "pager" },
          h("button", { type: "button", id: "newer", "data-k": "newer", disabled: !state.cursors.length, onclick: () => { state.cursor = state.cursors.pop() || null; state.last = ""; refresh(); } }, "← Newer"),
          h("span", { class: "muted" }, page.runs.length ? `Runs ${first}–${first + page.runs.length - 1} · page ${pageNo}` : "No runs"),
          h("button", { type: "button", id: "older", "data-k": "older", disabled: !page.next_cursor, onclick: () => { state.cursors.push(state.cursor); state.cursor = page.next_cursor; state.last = ""; refresh(); } }, "Older →"),
        );
        if (!page.runs.length) {
          const hint = filters.workflow_id || filters.status ? "No run matches these filters." : "No runs yet. Publish an event and its runs appear here.";
          return [h("div", { class: "panel empty" }, hint), pager];
        }
        return [h("div", { class: "panel flush" }, runsTable(page.runs)), pager];
      });
    };
    return { name: "runs", refresh };
  }

  // ---- one run ---------------------------------------------------------------------------------------

  function waitText(w) {
    if (!w) return "";
    const kinds = {
      timer: () => `a timer until ${time(w.until)}`,
      event: () => `an event on topic ${w.topic}`,
      resume: () => "a resume (POST /api/v1/runs/{id}/resume)",
      child: () => "a child run to finish",
    };
    return `Step ${w.step} waits for ${(kinds[w.kind] || (() => w.kind))()}`;
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
    steps.forEach((step, i) => {
      const start = ms(step.started_at);
      const end = step.finished_at ? ms(step.finished_at) : now;
      const left = Number.isFinite(start) ? ((start - t0) / span) * 100 : 0;
      const width = Number.isFinite(start) ? Math.max(((end - start) / span) * 100, 0.6) : 0;
      const waiting = run.waiting_for && run.waiting_for.step === step.key ? run.waiting_for : null;
      const detail = [];
      if (step.error) detail.push(h("div", { class: "step-error" }, h("strong", {}, step.error.type || "Error"), ": ", step.error.message || ""));
      if (waiting || step.status === "waiting") detail.push(h("div", { class: "step-wait" }, waiting ? waitText(waiting) : "Waiting"));
      if ("result" in step) {
        detail.push(h("details", { "data-k": `step:${run.run_id}:${step.key}` }, h("summary", {}, "Result"), h("pre", {}, json(step.result))));
      }
      list.append(
        h("li", { class: `step s-${step.status}` },
          h("div", { class: "step-head" },
            h("span", { class: "step-no muted" }, String(i + 1)),
            h("span", { class: "step-key mono" }, step.key),
            badge(step.status),
            h("span", { class: "muted" }, `${step.attempts} attempt${step.attempts === 1 ? "" : "s"}`),
            h("span", { class: "num" }, Number.isFinite(start) ? duration(end - start) : "—"),
            h("div", { class: "bar-track", title: `started ${time(step.started_at)}, finished ${time(step.finished_at)}` },
              h("div", { class: `bar s-${step.status}`, style: `left:${left.toFixed(2)}%;width:${width.toFixed(2)}%` }))),
          detail),
      );
    });
    return list;
  }

  async function control(run, action, body) {
    try {
      const answer = await api(`/api/v1/runs/${enc(run.run_id)}/${action}`, { body: body || {} });
      toast(`Run ${short(run.run_id)}: ${answer && answer.status ? answer.status : action + " sent"}`, "ok");
      state.last = "";
      if (state.view) state.view.refresh();
      return true;
    } catch (err) {
      toast(`${action} failed: ${err.message}`, "bad");
      return false;
    }
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

  $("resume-cancel").addEventListener("click", () => $("resume-dialog").close());
  $("resume-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    let data;
    try {
      data = JSON.parse($("resume-data").value || "{}");
    } catch (err) {
      $("resume-error").textContent = `Data is not JSON: ${err.message}`;
      return;
    }
    if (data === null || typeof data !== "object" || Array.isArray(data)) {
      $("resume-error").textContent = "Data must be a JSON object.";
      return;
    }
    const dialog = $("resume-dialog");
    if (await control({ run_id: dialog.dataset.run }, "resume", { step_key: $("resume-step").value, data })) dialog.close();
  });

  function eventLinks(run, execution) {
    const ids = (run.trigger && run.trigger.event_ids) || [];
    if (!ids.length) return "—";
    const payload = execution && execution.payload;
    const events = payload ? (Array.isArray(payload.events) ? payload.events : [payload]) : [];
    const topics = new Map(events.filter((e) => e && e.id).map((e) => [e.id, e.topic]));
    return ids.map((id) => {
      const topic = topics.get(id);
      return topic ? h("a", { href: `#/events${query({ topic })}`, class: "mono chip", title: `${topic} · ${id}` }, `${topic} · ${short(id)}`) : h("span", { class: "mono chip" }, short(id));
    });
  }

  function runView(runId) {
    const content = h("div", { id: "run-content" });
    replace(main, content);
    const refresh = async () => {
      const [run, execution] = await Promise.all([
        api(`/api/v1/runs/${enc(runId)}`),
        api(`/api/v1/executions/${enc(runId)}`).catch(() => null),
      ]);
      show(content, { run, execution }, () => {
        const end = FINISHED.has(run.status) ? ms(run.updated_at) : Date.now();
        const actions = h("div", { class: "actions" });
        if (isAdmin() && CANCELLABLE.has(run.status)) actions.append(h("button", { type: "button", id: "cancel-run", class: "danger", "data-k": "cancel", onclick: () => control(run, "cancel") }, "Cancel run"));
        if (isAdmin() && run.status === "waiting" && run.waiting_for && run.waiting_for.kind === "resume") actions.append(h("button", { type: "button", id: "resume-run", class: "primary", "data-k": "resume", onclick: () => openResume(run) }, "Resume…"));
        const facts = [
          ["Workflow", h("a", { href: `#/runs${query({ workflow_id: run.workflow_id })}` }, run.workflow_id)],
          ["Trigger", [h("span", {}, run.trigger ? run.trigger.type : "—"), " ", eventLinks(run, execution)]],
          ["Attempts", String(run.attempts)],
          ["Created", time(run.created_at)],
          ["Updated", time(run.updated_at)],
          ["Duration", duration(end - ms(run.created_at))],
        ];
        return [
          h("div", { class: "crumbs" }, h("a", { href: state.runsHash, "data-k": "back" }, "← Runs")),
          h("div", { class: "run-head" }, h("h1", { class: "mono" }, run.run_id), badge(run.status), h("span", { class: "spacer" }), actions),
          h("dl", { class: "facts panel" }, facts.map(([k, v]) => h("div", {}, h("dt", {}, k), h("dd", {}, v)))),
          run.waiting_for ? h("div", { class: "panel wait-box" }, waitText(run.waiting_for)) : null,
          run.error ? h("div", { class: "panel error-box" }, h("strong", {}, run.error.type), ": ", run.error.message) : null,
          h("section", { class: "panel" }, h("h2", {}, `Steps (${(run.steps || []).length})`), timeline(run)),
          h("div", { class: "two" },
            h("section", { class: "panel" }, h("h2", {}, "Payload"), execution ? h("pre", { id: "payload" }, json(execution.payload)) : h("p", { class: "muted" }, "Unavailable")),
            h("section", { class: "panel" }, h("h2", {}, "Result"), h("pre", { id: "result" }, json(run.result)))),
        ];
      });
    };
    return { name: "run", refresh };
  }

  // ---- events ----------------------------------------------------------------------------------------

  async function runsByEvent() {
    const index = new Map();
    let cursor = null;
    for (let i = 0; i < RUNS_INDEX_PAGES; i++) {
      const page = await api(`/api/v1/runs${query({ limit: 100, cursor })}`);
      for (const run of page.runs) for (const id of (run.trigger && run.trigger.event_ids) || []) {
        if (!index.has(id)) index.set(id, []);
        index.get(id).push(run);
      }
      if (!page.next_cursor) break;
      cursor = page.next_cursor;
    }
    return index;
  }

  function eventsView(params) {
    const topic = params.get("topic") || "";
    const input = h("input", { id: "topic", type: "search", list: "topic-list", value: topic, placeholder: "e.g. user/signup", autocomplete: "off", required: true, "data-primary": true });
    const form = h("form", { class: "toolbar", role: "search" },
      h("h1", {}, "Events"),
      h("label", { for: "topic" }, "Topic"), input,
      h("datalist", { id: "topic-list" }, [...state.topics].map((t) => h("option", { value: t }))),
      h("button", { type: "submit", class: "primary" }, "Show"));
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      state.afters = [];
      state.after = 0;
      location.hash = `#/events${query({ topic: input.value.trim() })}`;
    });
    const content = h("div", { id: "events-content" });
    replace(main, form, content);
    if (!topic) {
      replace(content, h("div", { class: "panel empty" }, "Choose a topic to see its events and the runs they started."));
      return { name: "events", refresh: async () => {} };
    }
    const refresh = async () => {
      const [page, index] = await Promise.all([
        api(`/api/v1/events${query({ topic, after_sequence_id: state.after, limit: 50 })}`),
        runsByEvent(),
      ]);
      if (page.events.length) remember(state.topics, "polos.topics", [topic]);
      const rows = page.events.map((e) => ({ ...e, runs: (index.get(e.id) || []).map((r) => ({ run_id: r.run_id, workflow_id: r.workflow_id, status: r.status })) }));
      show(content, { rows, next: page.next_after_sequence_id }, () => {
        const pager = h("div", { class: "pager" },
          h("button", { type: "button", disabled: !state.afters.length, onclick: () => { state.after = state.afters.pop() || 0; state.last = ""; refresh(); } }, "← Earlier"),
          h("span", { class: "muted" }, rows.length ? `Sequence ${rows[0].sequence_id}–${rows[rows.length - 1].sequence_id}` : "No events"),
          h("button", { type: "button", disabled: !page.next_after_sequence_id, onclick: () => { state.afters.push(state.after); state.after = page.next_after_sequence_id; state.last = ""; refresh(); } }, "Later →"));
        if (!rows.length) return [h("div", { class: "panel empty" }, "No events on this topic yet."), pager];
        const body = h("tbody", {});
        for (const e of rows) {
          body.append(h("tr", {},
            h("td", { class: "num" }, String(e.sequence_id)),
            h("td", { class: "mono", title: e.id }, short(e.id)),
            h("td", {}, e.event_type || h("span", { class: "muted" }, "—")),
            h("td", { class: "num" }, time(e.created_at)),
            h("td", {}, h("details", { "data-k": `event:${e.id}` }, h("summary", { class: "mono ellipsis" }, JSON.stringify(e.data)), h("pre", {}, json(e.data)))),
            h("td", {}, e.runs.length ? e.runs.map((r) => h("a", { href: `#/runs/${enc(r.run_id)}`, class: "chip row-link", "data-k": `run:${r.run_id}` }, badge(r.status), " ", r.workflow_id)) : h("span", { class: "muted" }, "—"))));
        }
        const head = h("thead", {}, h("tr", {}, ["Seq", "Event", "Type", "Published", "Data", "Runs"].map((c) => h("th", { scope: "col" }, c))));
        return [h("div", { class: "panel flush" }, h("table", { class: "grid events" }, head, body)), pager];
      });
    };
    return { name: "events", refresh };
  }

  // ---- dead letters ----------------------------------------------------------------------------------

  const deadItems = (body) => (Array.isArray(body) ? body : Object.values(body || {}).find(Array.isArray) || []);

  function deadLettersView(params) {
    const workflow = params.get("workflow_id") || "";
    const content = h("div", { id: "dead-content" });
    replace(main, h("div", { class: "toolbar" }, h("h1", {}, "Dead letters"), workflow ? h("a", { href: "#/dead-letters" }, "← All workflows") : null), content);
    const redrive = async (wf) => {
      try {
        const answer = await api(`/api/v1/workflows/${enc(wf)}/dead-letters/redrive`, { body: {} });
        toast(`Moved ${answer.moved} message${answer.moved === 1 ? "" : "s"} back to ${wf}'s queue`, "ok");
      } catch (err) {
        toast(`Redrive failed: ${err.message}`, "bad");
      }
      state.last = "";
      refresh();
    };
    const refresh = async () => {
      if (!isAdmin()) return show(content, { scope: state.scope }, () => h("div", { class: "panel empty" }, "Dead letters need an admin key."));
      const names = workflow ? [workflow] : [...state.workflows].sort();
      let supported = true;
      const lists = await Promise.all(names.map((wf) => api(`/api/v1/workflows/${enc(wf)}/dead-letters`).then(deadItems, (err) => {
        if (notFoundRoute(err)) supported = false;
        else throw err;
        return [];
      })));
      show(content, { names, lists, supported }, () => {
        if (!supported) return h("div", { class: "panel empty" }, "This server has no dead-letter routes, so there is nothing to show or redrive.");
        if (!names.length) return h("div", { class: "panel empty" }, "No workflow seen yet: workflows appear here once they have runs.");
        if (!workflow) {
          const body = h("tbody", {}, names.map((wf, i) => h("tr", {},
            h("td", {}, h("a", { href: `#/dead-letters${query({ workflow_id: wf })}`, class: "row-link", "data-k": `dl:${wf}` }, wf)),
            h("td", { class: "num" }, String(lists[i].length)),
            h("td", {}, lists[i].length ? h("button", { type: "button", class: "redrive", "data-k": `redrive:${wf}`, onclick: () => redrive(wf) }, "Redrive") : null))));
          return h("div", { class: "panel flush" }, h("table", { class: "grid" }, h("thead", {}, h("tr", {}, ["Workflow", "Dead letters", ""].map((c) => h("th", { scope: "col" }, c)))), body));
        }
        const items = lists[0];
        return [
          h("div", { class: "run-head" }, h("h2", {}, `${workflow}: ${items.length} dead letter${items.length === 1 ? "" : "s"}`), h("span", { class: "spacer" }),
            items.length ? h("button", { type: "button", class: "primary redrive", "data-k": `redrive:${workflow}`, onclick: () => redrive(workflow) }, "Redrive all") : null),
          items.length ? h("div", { class: "panel" }, h("ol", { class: "plain" }, items.map((item, i) => h("li", {},
            item && item.run_id ? h("a", { href: `#/runs/${enc(item.run_id)}`, class: "mono" }, item.run_id) : h("span", { class: "mono" }, `#${i + 1}`),
            h("details", { "data-k": `dlitem:${workflow}:${i}` }, h("summary", {}, "Message"), h("pre", {}, json(item))))))) : h("div", { class: "panel empty" }, "No dead letters."),
        ];
      });
    };
    return { name: "dead-letters", refresh };
  }

  // ---- routing and keys ------------------------------------------------------------------------------

  function route() {
    const hash = location.hash.replace(/^#/, "") || "/runs";
    const [path, search] = hash.split("?");
    const params = new URLSearchParams(search || "");
    const parts = path.split("/").filter(Boolean);
    let view;
    if (parts[0] === "runs" && parts[1]) view = runView(decodeURIComponent(parts[1]));
    else if (parts[0] === "events") view = eventsView(params);
    else if (parts[0] === "dead-letters") view = deadLettersView(params);
    else view = runsView(params);
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
