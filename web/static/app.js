// codebase-mcp jobs page: live jobs (one SSE stream per view), start, cancel and search.
//
// Authentication (docs/architecture.md, "HTTP security"): the URL printed by
// `codebase-mcp serve --transport http` ends in `#token=...`. A fragment never reaches the server
// (nor its logs). This script sends it once, in an Authorization header, to POST /web/api/session,
// which answers with an HttpOnly, SameSite=Strict session cookie, and removes the fragment from the
// address bar. Every later fetch() and EventSource under /web/api carries that cookie by itself.
//
// Streams: /web/api/projects/{project}/events (one project) or /web/api/events (all). Each `job`
// event is one version of one job; the page keeps the newest version of each job and ignores
// older ones, so the re-reads the server sends after every (re)connect are harmless. The browser
// reconnects by itself and sends Last-Event-ID; if the stream is closed for good (an HTTP error)
// the page opens a new one after a short, growing delay.
"use strict";

const $ = (id) => document.getElementById(id);
const ACTIVE = new Set(["pending", "running"]);
const jobs = new Map(); // job_id -> newest job view
let source = null;
let retryMs = 500;
let retryTimer = null;

// -- session and API ----------------------------------------------------------------------------
async function startSession() {
  const token = new URLSearchParams(location.hash.slice(1)).get("token");
  if (!token) return;
  history.replaceState(null, "", location.pathname + location.search); // out of the address bar
  const response = await fetch("/web/api/session", {
    method: "POST",
    headers: { Authorization: "Bearer " + token },
    credentials: "same-origin",
  });
  if (!response.ok) throw new Error("the token in the URL was refused (HTTP " + response.status + ")");
}

async function api(path, options = {}) {
  const response = await fetch(path, { credentials: "same-origin", ...options });
  let body = null;
  try { body = await response.json(); } catch (_) { body = null; }
  if (response.status === 401) {
    throw new Error("not signed in: open the URL that `codebase-mcp serve --transport http` printed");
  }
  if (!response.ok) throw new Error((body && body.error) || path + ": HTTP " + response.status);
  return body;
}

const enc = encodeURIComponent;
const currentProject = () => $("project").value;

function showError(error) {
  const box = $("error");
  box.textContent = String((error && error.message) || error);
  box.hidden = false;
}

// -- formatting ---------------------------------------------------------------------------------
function seconds(s) {
  if (s == null || !isFinite(s)) return "";
  s = Math.max(0, Math.round(s));
  if (s < 60) return s + "s";
  const m = Math.floor(s / 60);
  if (m < 60) return m + "m " + (s % 60) + "s";
  return Math.floor(m / 60) + "h " + (m % 60) + "m";
}
function time(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return d.toDateString() === new Date().toDateString() ? d.toLocaleTimeString() : d.toLocaleString();
}
const pct = (x) => Math.round((x || 0) * 100) + "%";

function duration(job) {
  if (!job.started_at) return "";
  const end = job.completed_at || job.cancelled_at;
  const stop = end ? new Date(end) : ACTIVE.has(job.status) ? new Date() : null;
  return stop ? seconds((stop - new Date(job.started_at)) / 1000) : "";
}

function pairs(list, items) {
  list.replaceChildren();
  for (const [label, value] of items) {
    if (value === "" || value == null) continue;
    const row = document.createElement("div");
    const dt = document.createElement("dt");
    const dd = document.createElement("dd");
    dt.textContent = label;
    dd.textContent = String(value);
    row.append(dt, dd);
    list.append(row);
  }
}

// -- jobs ---------------------------------------------------------------------------------------
function card(job) {
  let el = $("job-" + job.job_id);
  if (el) return el;
  el = $("job-template").content.firstElementChild.cloneNode(true);
  el.id = "job-" + job.job_id;
  el.querySelector(".cancel").addEventListener("click", () => cancel(job.job_id));
  $("jobs").prepend(el);
  return el;
}

function render(job) {
  const el = card(job);
  el.dataset.status = job.status;
  el.dataset.version = job.version;
  el.dataset.project = job.project_id;
  el.dataset.pct = job.progress_percentage;
  el.querySelector(".status").textContent = job.status;
  el.querySelector(".name").textContent = job.repo_name;
  el.querySelector(".origin").textContent = job.origin || "worker";
  el.querySelector(".origin").title = "project " + job.project_id;
  el.querySelector(".path").textContent = job.repo_path;
  el.querySelector(".overall").value = job.progress_percentage;
  el.querySelector(".pct").textContent = job.progress_percentage + "%";
  el.querySelector(".eta").textContent =
    job.status === "running" && job.eta_seconds != null ? "ETA " + seconds(job.eta_seconds) : "";
  el.querySelector(".static").value = job.static_coverage || 0;
  el.querySelector(".static-pct").textContent = pct(job.static_coverage);
  el.querySelector(".transformer").value = job.transformer_coverage || 0;
  el.querySelector(".transformer-pct").textContent = pct(job.transformer_coverage);
  el.querySelector(".message").textContent = job.progress_message || "";
  pairs(el.querySelector(".counters"), [
    ["files indexed", job.files_indexed + (job.files_to_index ? " / " + job.files_to_index : "")],
    ["files scanned", job.files_scanned],
    ["chunks stored", job.chunks_created],
    ["chunks embedded", job.chunks_embedded + (job.total_chunks ? " / " + job.total_chunks : "")],
    ["phase", job.phase || ""],
    ["project", job.project_id],
  ]);
  renderTimes(el, job);
  const error = el.querySelector(".error");
  error.hidden = !job.error_message;
  error.textContent = job.error_message
    ? (job.error_type ? job.error_type + ": " : "") + job.error_message + (job.error_traceback ? "\n" + job.error_traceback : "")
    : "";
  el.querySelector(".cancel").hidden = !ACTIVE.has(job.status);
}

function renderTimes(el, job) {
  pairs(el.querySelector(".times"), [
    ["created", time(job.created_at)],
    ["started", time(job.started_at)],
    ["searchable", time(job.searchable_at)],
    ["finished", time(job.completed_at || job.cancelled_at)],
    ["duration", duration(job)],
  ]);
}

function accept(job) {
  const known = jobs.get(job.job_id);
  if (known && known.version >= job.version) return; // an older version (a re-read): keep ours
  jobs.set(job.job_id, job);
  render(job);
  counts();
}

function counts() {
  const by = {};
  for (const job of jobs.values()) by[job.status] = (by[job.status] || 0) + 1;
  $("counts").textContent = Object.entries(by).map(([s, n]) => n + " " + s).join(" · ");
  $("empty").hidden = jobs.size > 0;
}

async function cancel(jobId) {
  const job = jobs.get(jobId);
  if (!job) return;
  const button = $("job-" + jobId).querySelector(".cancel");
  button.disabled = true;
  try {
    const answer = await api("/web/api/projects/" + enc(job.project_id) + "/jobs/" + enc(jobId) + "/cancel", { method: "POST" });
    accept(answer.job);
  } catch (error) {
    showError(error);
  } finally {
    button.disabled = false;
  }
}

// -- the stream ---------------------------------------------------------------------------------
function setConn(state, text) {
  const conn = $("conn");
  conn.dataset.state = state;
  conn.textContent = text;
}

function connect() {
  clearTimeout(retryTimer);
  if (source) source.close();
  const project = currentProject();
  const url = project ? "/web/api/projects/" + enc(project) + "/events" : "/web/api/events";
  const es = (source = new EventSource(url)); // same origin: the session cookie goes along
  setConn("connecting", "connecting…");
  es.addEventListener("job", (e) => {
    const job = JSON.parse(e.data);
    accept(job);
    if (![...$("project").options].some((o) => o.value === job.project_id)) loadProjects().catch(showError);
  });
  es.addEventListener("ready", () => {
    retryMs = 500;
    setConn("live", "live");
  });
  es.onerror = () => {
    if (es !== source) return;
    setConn("reconnecting", "reconnecting…");
    if (es.readyState === EventSource.CLOSED) { // refused for good: try again ourselves
      retryTimer = setTimeout(connect, retryMs);
      retryMs = Math.min(retryMs * 2, 10000);
    }
  };
}

function switchProject() {
  jobs.clear();
  $("jobs").replaceChildren();
  counts();
  const project = currentProject();
  if (project) $("start-project").value = project;
  history.replaceState(null, "", location.pathname + (project ? "?project=" + enc(project) : ""));
  $("search-note").textContent = project ? "" : "Choose a project to search.";
  connect();
}

async function loadProjects() {
  const select = $("project");
  const chosen = select.value;
  const projects = await api("/web/api/projects");
  for (const p of projects) {
    if (![...select.options].some((o) => o.value === p.id)) select.add(new Option(p.id, p.id));
  }
  select.value = chosen;
}

// -- forms --------------------------------------------------------------------------------------
async function startIndexing(event) {
  event.preventDefault();
  const note = $("start-result");
  note.className = "note";
  note.textContent = "starting…";
  try {
    const answer = await api("/web/api/jobs", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({
        repo_path: $("start-path").value.trim(),
        project_id: $("start-project").value.trim() || null,
        force_reindex: $("start-force").checked,
      }),
    });
    note.textContent = (answer.coalesced ? "Already active: job " : "Queued job ") + answer.job_id + " in project " + answer.project_id;
    if (!currentProject() || currentProject() === answer.project_id) accept(answer.job);
    await loadProjects();
  } catch (error) {
    note.className = "note failed";
    note.textContent = error.message;
  }
}

function highlighted(text, words) {
  const out = document.createDocumentFragment();
  if (!words.length) { out.append(text); return out; }
  const pattern = new RegExp("(" + words.map((w) => w.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join("|") + ")", "gi");
  let last = 0;
  for (const match of text.matchAll(pattern)) {
    out.append(text.slice(last, match.index));
    const mark = document.createElement("mark");
    mark.textContent = match[0];
    out.append(mark);
    last = match.index + match[0].length;
  }
  out.append(text.slice(last));
  return out;
}

async function search(event) {
  event.preventDefault();
  const project = currentProject();
  const note = $("search-note");
  const list = $("results");
  note.className = "note";
  if (!project) { note.textContent = "Choose a project to search."; return; }
  const query = $("search-query").value.trim();
  note.textContent = "searching…";
  try {
    const answer = await api("/web/api/projects/" + enc(project) + "/search?q=" + enc(query) + "&limit=10&context_lines=0");
    const words = [...new Set(query.split(/[^\p{L}\p{N}_]+/u).filter((w) => w.length > 1))];
    list.replaceChildren();
    for (const hit of answer.results) {
      const item = document.createElement("li");
      const where = document.createElement("div");
      where.className = "where";
      where.textContent = hit.file_path + ":" + hit.start_line + (hit.end_line > hit.start_line ? "-" + hit.end_line : "");
      const meta = document.createElement("div");
      meta.className = "meta";
      meta.textContent = [hit.repository_name, hit.symbol, hit.kind, hit.language, "score " + hit.score.toFixed(3)].filter(Boolean).join(" · ");
      const pre = document.createElement("pre");
      pre.append(highlighted(hit.content.split("\n").slice(0, 12).join("\n"), words));
      item.append(where, meta, pre);
      list.append(item);
    }
    note.textContent = answer.results.length + " results (" + answer.mode + ", " + Math.round(answer.took_ms) + " ms)" + (answer.notice ? " · " + answer.notice : "");
  } catch (error) {
    note.className = "note failed";
    note.textContent = error.message;
  }
}

// -- start --------------------------------------------------------------------------------------
(async () => {
  $("start").addEventListener("submit", startIndexing);
  $("search").addEventListener("submit", search);
  await startSession();
  await loadProjects();
  const wanted = new URLSearchParams(location.search).get("project");
  if (wanted && [...$("project").options].some((o) => o.value === wanted)) $("project").value = wanted;
  $("project").addEventListener("change", switchProject);
  switchProject();
  setInterval(() => { // running jobs' durations move on between events
    for (const job of jobs.values()) if (ACTIVE.has(job.status)) renderTimes($("job-" + job.job_id), job);
  }, 1000);
})().catch(showError);
