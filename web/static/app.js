// codebase-mcp jobs page.
//
// Authentication (see docs/architecture.md, "HTTP security"): the URL printed by
// `codebase-mcp serve --transport http` ends in `#token=...`. A fragment is never sent to the
// server, so the token stays out of its logs. This script sends it once, in an Authorization
// header, to POST /web/api/session, which answers with an HttpOnly, SameSite=Strict session
// cookie; then it removes the fragment from the address bar. Every later fetch() and EventSource
// under /web/api carries that cookie by itself.
"use strict";

const streams = new Map();

async function startSession() {
  const params = new URLSearchParams(location.hash.slice(1));
  const token = params.get("token");
  if (!token) return;
  history.replaceState(null, "", location.pathname + location.search); // out of the address bar and history
  const response = await fetch("/web/api/session", {
    method: "POST",
    headers: { Authorization: "Bearer " + token },
    credentials: "same-origin",
  });
  if (!response.ok) throw new Error("the token in the URL was refused (" + response.status + ")");
}

async function api(path) {
  const response = await fetch(path, { credentials: "same-origin" });
  if (response.status === 401) {
    throw new Error("not signed in: open the URL that `codebase-mcp serve --transport http` printed");
  }
  if (!response.ok) throw new Error(path + ": HTTP " + response.status);
  return response.json();
}

function showError(error) {
  const box = document.getElementById("error");
  box.textContent = String(error.message || error);
  box.hidden = false;
}

function render(job) {
  let row = document.getElementById("job-" + job.job_id);
  if (!row) {
    row = document.createElement("tr");
    row.id = "job-" + job.job_id;
    for (let i = 0; i < 6; i++) row.appendChild(document.createElement("td"));
    const bar = document.createElement("progress");
    bar.max = 100;
    row.children[2].append(bar, " ", document.createElement("span"));
    document.getElementById("jobs").prepend(row);
  }
  const c = row.children;
  c[0].textContent = job.repo_name;
  c[1].textContent = job.status;
  c[1].className = job.status;
  c[2].querySelector("progress").value = job.progress_percentage;
  c[2].querySelector("span").textContent = job.progress_percentage + "%";
  c[3].textContent = job.progress_message;
  c[4].textContent = job.files_indexed + " / " + job.files_scanned;
  c[5].textContent = job.chunks_created;
}

function follow(project, job) {
  render(job);
  if (["completed", "failed", "cancelled"].includes(job.status) || streams.has(job.job_id)) return;
  const url = "/web/api/projects/" + encodeURIComponent(project) + "/jobs/" + encodeURIComponent(job.job_id) + "/events";
  const es = new EventSource(url); // same origin: the session cookie goes along
  streams.set(job.job_id, es);
  es.addEventListener("job", (e) => render(JSON.parse(e.data)));
  es.addEventListener("end", (e) => {
    render(JSON.parse(e.data));
    es.close();
    streams.delete(job.job_id);
  });
}

async function load(project) {
  streams.forEach((es) => es.close());
  streams.clear();
  document.getElementById("jobs").replaceChildren();
  const jobs = await api("/web/api/projects/" + encodeURIComponent(project) + "/jobs");
  jobs.reverse().forEach((j) => follow(project, j));
}

(async () => {
  await startSession();
  const select = document.getElementById("project");
  const projects = await api("/web/api/projects");
  for (const p of projects) select.add(new Option(p.id, p.id));
  const wanted = new URLSearchParams(location.search).get("project");
  if (wanted) select.value = wanted;
  select.onchange = () => load(select.value).catch(showError);
  if (select.value) await load(select.value);
})().catch(showError);
